"""Guards written once and wrapped around every policy.

A third-party policy gets bounds and the stale-data rule for free. (Rate limits, stabilization
windows and scale-to-zero follow HPA ``behavior`` semantics; see the policies issue.)
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.config import BehaviorConfig, CapacityConfig
from autoscaler.core.model import Observation, Recommendation, Term


@dataclass(frozen=True, slots=True)
class GuardState:
    """What the guards remember between ticks."""


@dataclass(frozen=True, slots=True)
class Guarded:
    desired: int
    reason: str
    terms: dict[str, Term]
    state: GuardState


class Guards:
    def __init__(self, capacity: CapacityConfig, behavior: BehaviorConfig) -> None:
        self.capacity = capacity
        self.behavior = behavior

    def initial_state(self) -> GuardState:
        return GuardState()

    def apply(
        self, obs: Observation, current: int, rec: Recommendation, state: GuardState
    ) -> Guarded:
        desired = rec.desired
        reason = rec.reason
        terms: dict[str, Term] = {"recommended": rec.desired}
        if not obs.fresh and desired < current:
            desired, reason = current, "stale observation: holding (never scale in on stale data)"
        if desired > self.capacity.max:
            desired, reason = self.capacity.max, f"{reason}; capped at max {self.capacity.max}"
        if desired < self.capacity.min:
            desired, reason = self.capacity.min, f"{reason}; raised to min {self.capacity.min}"
        return Guarded(desired, reason, terms, state)
