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
    """How a group's capacity is bought; spot is preferred and may vanish.

    ``reserved``: committed instances (reserved instances, savings plans, committed-use
    discounts), paid whether used or not, so they are filled first and never given back; to a
    provider they are on-demand capacity of a fixed size.
    """

    SPOT = "spot"
    ON_DEMAND = "on-demand"
    RESERVED = "reserved"


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
    """One instance group as its provider described it. Every provider (and the simulator's
    fleet) reports these meanings; ``autoscaler.testing.conformance`` checks them.

    - ``desired``: the size the group was last asked for and accepted (ASG DesiredCapacity,
      MIG targetSize, VMSS capacity, replicas). Draining instances are not part of it.
    - ``pending``: part of ``desired`` with no instance yet: accepted but not launched, or a
      launch that is failing. Costs nothing yet, serves nothing.
    - ``booting``: an instance exists (billed) but does not serve yet.
    - ``running``: serving; takes new work.
    - ``draining``: leaving the group: takes no new work, may still finish requests in flight,
      still billed until gone. Never counted in ``desired`` nor in ``current``: a decision to
      remove it has been carried out, and counting it would make the policy believe in
      capacity that no longer takes work.
    - ``available`` turns false while the provider reports that launches fail (spot stockout,
      quota), with ``reason`` saying why, so the allocator routes capacity elsewhere.

    ``current`` (see the property) is what the decision core sizes from.
    """

    name: str
    market: Market
    desired: int
    booting: int
    running: int
    available: bool = True
    draining: int = 0
    pending: int = 0
    reason: str = ""

    @property
    def current(self) -> int:
        """Instances we pay for or asked for, draining excluded: pending + booting + running,
        at least the desired size (a provider that is slow to show launches still counts
        what it accepted)."""
        return max(self.desired, self.pending + self.booting + self.running)


@dataclass(frozen=True, slots=True)
class FleetState:
    """All groups of one pool.

    The totals are summed once, on first use, and kept: the policy, the guards and the
    pipeline each read them every tick, for thousands of pools.
    """

    groups: tuple[GroupState, ...]
    _totals: tuple[int, int, int, int, int, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _sum(self) -> tuple[int, int, int, int, int, int]:
        """``(desired, booting, running, current, pending, draining)`` over the groups,
        computed once."""
        totals = self._totals
        if totals is None:
            desired = booting = running = current = pending = draining = 0
            for g in self.groups:
                d, b, r, p = g.desired, g.booting, g.running, g.pending
                desired += d
                booting += b
                running += r
                pending += p
                draining += g.draining
                current += p + b + r if p + b + r > d else d  # GroupState.current, inlined
            totals = (desired, booting, running, current, pending, draining)
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

    @property
    def pending(self) -> int:
        return self._sum()[4]

    @property
    def draining(self) -> int:
        return self._sum()[5]

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


def scale_in_key(booting: bool, ready_at: float, started_at: float, seq: int) -> tuple[
    bool, float, float, int
]:
    """Sort key of THE scale-in victim order (ascending = removed first), for every provider
    that picks its own victims (``local``, the fake, the simulator's fleet).

    Booting instances go first, the one that would be ready last first: they serve nothing yet,
    and stopping the least advanced boot wastes the least. Then running instances, newest first
    (latest start, then highest sequence number).

    Why newest rather than least loaded: no cloud API reports an instance's in-flight requests,
    so least-loaded cannot be what AWS, GCP, Azure or Kubernetes do; newest-first is what a
    Kubernetes ReplicaSet does and what an ASG's ``NewestInstance`` termination policy does, and
    it is reproducible from what every provider knows. The price: a busy new instance may be
    drained while an idle old one stays, so a drain can last longer than with least-loaded
    (the README's simulation figures state the difference). Clouds that choose their own victims
    (ASG termination policies, MIG) are not bound by this order.
    """
    return (not booting, -ready_at if booting else 0.0, -started_at, -seq)
