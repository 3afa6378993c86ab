"""Spread a pool's desired total over its groups: reserved, then spot, cheapest first.

Preference order is fixed per pool (reserved before spot before on-demand, then by price,
then by the order in the file), so filling in that order also means scale-in removes the least
preferred capacity first. A group whose provider reports failed launches (or that the shell
holds unavailable after a capacity error or a boot timeout) keeps what runs but gets no more,
and the shortfall flows to the next group: that is the spot → on-demand fallback, and it
reverses by itself when the spot group reports available again.

The fill, in order:

1. every group's ``min`` (a floor, requested even while the group is unavailable: it is the
   group's own lower bound, and a cloud refuses a size below it anyway);
   A reserved group's floor is its whole committed size (the config sets ``min = max =
   count``): it is paid whether used or not, so it is filled before anything else;
2. the pool's ``on_demand_base``: the first instances of the desired total go on on-demand
   groups (their floors, and reserved groups, count toward it: neither is preempted),
   cheapest available first. If no on-demand group can take them, the rest joins step 3:
   serving capacity is worth more than the market mix;
3. the remainder, in preference order (spot first), honouring availability;
4. what no usable group can take stays on the most preferred groups even if unavailable, so
   the shortfall is visible and launches when capacity returns.

Moving back is make-before-break: a less preferred group keeps running instances that the
preferred groups cannot yet replace with running ones of their own, so a return to spot never
opens a boot-long hole in serving capacity. The targets then add up to more than the desired
total, by at most the replacements still booting, and fall back as they come up.

Not guaranteed: the floors win over the total. If the groups' ``min`` add up to more than the
desired total the targets add up to the floors (the config refuses a ``capacity.min`` below
them, so only hand-built specs get there).
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.core.model import FleetState, Market
from autoscaler.core.specs import GroupSpec

Limits = tuple[tuple[str, int | None], ...]

_RANK = {Market.RESERVED: 0, Market.SPOT: 1, Market.ON_DEMAND: 2}
"""Fill order by market: committed capacity first (paid anyway), then the cheap preemptible."""


class Allocator:
    def __init__(self, groups: Sequence[GroupSpec], on_demand_base: int = 0) -> None:
        ranked = sorted(
            enumerate(groups),
            key=lambda item: (_RANK[item[1].market], item[1].hourly_price, item[0]),
        )
        self.order = tuple(g for _, g in ranked)
        self.on_demand_base = on_demand_base
        # Flattened once (the spec is frozen): this runs for every pool on every tick.
        self._names = tuple(g.name for g in self.order)
        self._limits: Limits = tuple((g.name, g.max) for g in self.order)
        self._floors = tuple((g.name, g.min) for g in self.order if g.min > 0)
        on_demand = [g for g in self.order if g.market == Market.ON_DEMAND]
        self._on_demand: Limits = tuple((g.name, g.max) for g in on_demand)
        self._on_demand_floors = sum(g.min for g in self.order if g.market != Market.SPOT)

    def allocate(self, desired: int, fleet: FleetState) -> dict[str, int]:
        targets = dict.fromkeys(self._names, 0)
        remaining = desired
        for name, floor in self._floors:
            targets[name] = floor
            remaining -= floor
        # The base counts the on-demand floors, and never takes more than the floors left.
        base = min(self.on_demand_base - self._on_demand_floors, remaining)
        if base > 0:
            left = self._fill(targets, base, fleet, self._on_demand, honour_availability=True)
            remaining -= base - left
        if remaining > 0:
            remaining = self._fill(targets, remaining, fleet, self._limits,
                                   honour_availability=True)
        if remaining > 0:
            # Every usable group is full: leave the shortfall on the most preferred groups
            # (even unavailable ones) so it stays visible and launches when capacity returns.
            self._fill(targets, remaining, fleet, self._limits, honour_availability=False)
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
        self, targets: dict[str, int], amount: int, fleet: FleetState, limits: Limits, *,
        honour_availability: bool,
    ) -> int:
        # Groups whose launches fail keep what runs: usually there are none, which one pass
        # over the fleet shows (instead of a lookup per group).
        held = False
        if honour_availability:
            for g in fleet.groups:
                if not g.available:
                    held = True
                    break
        for name, limit in limits:
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
