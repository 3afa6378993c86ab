"""Cross-field checks of a pool's spot-fallback knobs (``capacity.on_demand_base``, group
``min``): what the allocator could not honour is refused at load time, naming the field.

Kept apart from ``models`` to keep that module short; it reads a validated pool, so it only
needs the pool's shape, not the model classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autoscaler.config.plugins import field_error
from autoscaler.core.model import Market

if TYPE_CHECKING:
    from autoscaler.config.models import PoolConfig


def check_spot_knobs(pool: PoolConfig) -> None:
    """Group floors and the on-demand base must be reachable within the pool's bounds."""
    floors = sum(g.min for g in pool.groups)
    if floors > pool.capacity.min:
        raise field_error(
            "pool", ("capacity", "min"),
            f"must cover the groups' min sizes (they add up to {floors}): the pool "
            f"could never shrink to {pool.capacity.min}", pool.capacity.min,
        )
    base = pool.capacity.on_demand_base
    if base == 0:
        return
    on_demand = [g for g in pool.groups if g.market != Market.SPOT]  # reserved counts too
    if not on_demand:
        raise field_error(
            "pool", ("capacity", "on_demand_base"),
            "needs at least one group with market: on-demand or reserved", base,
        )
    limits = [g.max for g in on_demand]
    if all(m is not None for m in limits) and sum(m or 0 for m in limits) < base:
        raise field_error(
            "pool", ("capacity", "on_demand_base"),
            f"exceeds what the on-demand groups can hold (their max sizes add up to "
            f"{sum(m or 0 for m in limits)})", base,
        )
