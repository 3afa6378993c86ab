"""Spread a pool's desired total over its groups: spot first, cheapest first.

Preference order is fixed per pool (spot before on-demand, then by price, then by the order in
the file), so filling in that order also means scale-in removes the least preferred capacity
first. A group whose provider reports failed launches keeps what runs but gets no more, and the
shortfall flows to the next group: that is the spot → on-demand fallback, and it reverses by
itself when the spot group reports available again.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.config import GroupConfig
from autoscaler.core.model import FleetState, Market


class Allocator:
    def __init__(self, groups: Sequence[GroupConfig]) -> None:
        ranked = sorted(
            enumerate(groups),
            key=lambda item: (item[1].market != Market.SPOT, item[1].hourly_price, item[0]),
        )
        self.order = tuple(g for _, g in ranked)

    def allocate(self, desired: int, fleet: FleetState) -> dict[str, int]:
        remaining = desired
        targets: dict[str, int] = {}
        for group in self.order:
            state = fleet.group(group.name)
            cap = group.max if group.max is not None else desired
            if state is not None and not state.available:
                cap = min(cap, state.running)
            take = max(0, min(remaining, cap))
            targets[group.name] = take
            remaining -= take
        if remaining > 0:
            # Every group is capped or unavailable: ask the most preferred group that still
            # has headroom in its own max, so the shortfall stays visible in desired sizes.
            for group in self.order:
                headroom = (group.max if group.max is not None else remaining + targets[group.name]) - targets[group.name]
                extra = max(0, min(remaining, headroom))
                targets[group.name] += extra
                remaining -= extra
                if remaining == 0:
                    break
        return targets
