"""Values that cross the boundary between the shell and the decision core.

They are frozen dataclasses with slots: cheap to build every tick for thousands of pools, and
impossible to mutate by accident once a decision has been logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Term = float | int | str | bool | None


class Market(StrEnum):
    """How a group's capacity is bought; spot is preferred and may vanish."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a queue source measured for one pool at one instant.

    ``None`` means *unknown*, never zero: a list whose head is not our JSON has a depth but no
    wait, and a queue without counters has no rates. Policies must fall back, not guess.
    """

    time: float
    depth: int
    oldest_wait_s: float | None = None
    in_flight: int | None = None
    arrival_rate: float | None = None
    completion_rate: float | None = None
    fresh: bool = True

    @property
    def demand(self) -> int:
        """Requests waiting or being served: the load the fleet must hold right now."""
        return self.depth + (self.in_flight or 0)


@dataclass(frozen=True, slots=True)
class GroupState:
    """One instance group as its provider described it.

    ``available`` turns false while the provider reports that launches fail (spot stockout,
    quota), so the allocator can route capacity elsewhere.
    """

    name: str
    market: Market
    desired: int
    booting: int
    running: int
    available: bool = True

    @property
    def current(self) -> int:
        """Instances we pay for or asked for: booting + running, at least the desired size."""
        return max(self.desired, self.booting + self.running)


@dataclass(frozen=True, slots=True)
class FleetState:
    """All groups of one pool.

    The totals are summed once, on first use, and kept: the policy, the guards and the
    pipeline each read them every tick, for thousands of pools.
    """

    groups: tuple[GroupState, ...]
    _totals: tuple[int, int, int, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _sum(self) -> tuple[int, int, int, int]:
        """``(desired, booting, running, current)`` over the groups, computed once."""
        totals = self._totals
        if totals is None:
            desired = booting = running = current = 0
            for g in self.groups:
                d, b, r = g.desired, g.booting, g.running
                desired += d
                booting += b
                running += r
                current += b + r if b + r > d else d  # GroupState.current, inlined
            totals = (desired, booting, running, current)
            object.__setattr__(self, "_totals", totals)
        return totals

    @property
    def desired(self) -> int:
        return self._sum()[0]

    @property
    def booting(self) -> int:
        return self._sum()[1]

    @property
    def running(self) -> int:
        return self._sum()[2]

    @property
    def current(self) -> int:
        return self._sum()[3]

    def group(self, name: str) -> GroupState | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What a policy wants before the guards have had their say."""

    desired: int
    reason: str
    terms: Mapping[str, Term] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one tick for one pool; data for the actuator, the log and the simulator."""

    pool: str
    time: float
    current: int
    desired: int
    targets: Mapping[str, int]
    reason: str
    terms: Mapping[str, Term] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        """``up``, ``down`` or ``none``, compared with the fleet's current total."""
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "none"

    def changes(self, fleet: FleetState) -> bool:
        """True when carrying this out would change any group's desired size."""
        return any(
            (g := fleet.group(name)) is None or g.desired != target
            for name, target in self.targets.items()
        )
