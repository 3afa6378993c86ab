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
    """All groups of one pool."""

    groups: tuple[GroupState, ...]

    @property
    def desired(self) -> int:
        return sum(g.desired for g in self.groups)

    @property
    def booting(self) -> int:
        return sum(g.booting for g in self.groups)

    @property
    def running(self) -> int:
        return sum(g.running for g in self.groups)

    @property
    def current(self) -> int:
        return sum(g.current for g in self.groups)

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
