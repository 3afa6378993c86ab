"""Reserved groups: committed instances whose size is their ``count``.

A ``market: reserved`` group is paid for whether it runs or not (reserved instances, savings
plans, committed-use discounts), so its size is not the autoscaler's to choose: the config
turns ``count`` into ``min = max = count``, the allocator fills it before spot and on-demand
(it is the cheapest capacity that is already paid), and every provider treats it as on-demand
capacity held at that size. ``count`` belongs to reserved groups only, and a reserved group
takes no ``min``/``max`` of its own (one number, one meaning).
"""

from __future__ import annotations

from typing import Any

from autoscaler.config.plugins import field_error
from autoscaler.core.model import Market


def reserved_sizes(common: dict[str, Any]) -> dict[str, Any]:
    """``common`` (a group's provider-independent keys) with a reserved group's bounds set."""
    market = common.get("market")
    count = common.get("count")
    if market != Market.RESERVED.value:
        if count is not None:
            raise field_error("group", ("count",),
                              "only a group with market: reserved has a count", count)
        return common
    if count is None:
        raise ValueError("a group with market: reserved needs 'count' (the committed instances)")
    for key in ("min", "max"):
        if key in common:
            raise field_error("group", (key,), "a reserved group's size is its count: drop "
                              f"{key} (reserved capacity is paid whether used or not)",
                              common[key])
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise field_error("group", ("count",), "must be a whole number of instances >= 1", count)
    return {**common, "min": count, "max": count}
