"""Spread a pool's desired total over its groups: spot first, cheapest first.

Preference order is fixed per pool (spot before on-demand, then by price, then by the order in
the file), so filling in that order also means scale-in removes the least preferred capacity
first. A group whose provider reports failed launches keeps what runs but gets no more, and the
shortfall flows to the next group: that is the spot → on-demand fallback, and it reverses by
itself when the spot group reports available again.

Moving back is make-before-break: a less preferred group keeps running instances that the
preferred groups cannot yet replace with running ones of their own, so a return to spot never
opens a boot-long hole in serving capacity. The targets then add up to more than the desired
total, by at most the replacements still booting, and fall back as they come up.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.core.model import FleetState, Market
from autoscaler.core.specs import GroupSpec


class Allocator:
    def __init__(self, groups: Sequence[GroupSpec]) -> None:
        ranked = sorted(
            enumerate(groups),
            key=lambda item: (item[1].market != Market.SPOT, item[1].hourly_price, item[0]),
        )
        self.order = tuple(g for _, g in ranked)
        # Flattened once (the spec is frozen): this runs for every pool on every tick.
        self._names = tuple(g.name for g in self.order)
        self._limits = tuple((g.name, g.max) for g in self.order)

    def allocate(self, desired: int, fleet: FleetState) -> dict[str, int]:
        targets = dict.fromkeys(self._names, 0)
        remaining = self._fill(targets, desired, fleet, honour_availability=True)
        if remaining > 0:
            # Every usable group is full: leave the shortfall on the most preferred groups
            # (even unavailable ones) so it stays visible and launches when capacity returns.
            self._fill(targets, remaining, fleet, honour_availability=False)
        self._keep_until_replaced(targets, desired, fleet)
        return targets

    def _keep_until_replaced(
        self, targets: dict[str, int], desired: int, fleet: FleetState
    ) -> None:
        """Raise targets of groups being cut to what still has to serve until the preferred
        groups' new instances run (most preferred surplus kept first)."""
        for g in fleet.groups:
            if g.running > targets.get(g.name, 0):
                break
        else:
            return  # nothing is being cut below what runs (the usual tick)
        running = {g.name: g.running for g in fleet.groups if g.running > targets.get(g.name, 0)}
        serving = 0
        for g in fleet.groups:
            target = targets.get(g.name, 0)
            serving += g.running if g.running < target else target
        shortfall = desired - serving
        if shortfall <= 0:
            return
        for name in self._names:
            if name not in running:
                continue
            keep = min(running[name] - targets[name], shortfall)
            targets[name] += keep
            shortfall -= keep
            if shortfall == 0:
                return

    def _fill(
        self, targets: dict[str, int], amount: int, fleet: FleetState, *, honour_availability: bool
    ) -> int:
        # Groups whose launches fail keep what runs: usually there are none, which one pass
        # over the fleet shows (instead of a lookup per group).
        held = False
        if honour_availability:
            for g in fleet.groups:
                if not g.available:
                    held = True
                    break
        for name, limit in self._limits:
            if amount <= 0:
                break
            cap = limit if limit is not None else targets[name] + amount
            if held:
                state = fleet.group(name)
                if state is not None and not state.available:
                    cap = min(cap, state.running)
            room = cap - targets[name]
            take = room if room < amount else amount  # max(0, min(amount, room))
            take = take if take > 0 else 0
            targets[name] += take
            amount -= take
        return amount
