"""policy → guards → allocator, for one pool; the single decision path for daemon and simulator.

Deciding and recording are separate steps: ``decide`` returns the decision and the state to
carry, with no scale event in it; ``applied`` records the event once the shell has actually
resized (the daemon after a successful ``set_desired``, the simulator right after it actuates).
A dry run or a failed resize therefore leaves the guards as if nothing had been tried, and the
next tick decides (and retries) from the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoscaler.core.allocator import Allocator
from autoscaler.core.guards import Guards, GuardState
from autoscaler.core.model import Decision, FleetState, Observation
from autoscaler.core.policy import Policy, PolicyContext
from autoscaler.core.specs import PoolSpec


@dataclass(frozen=True, slots=True)
class ControllerState:
    """Everything a pool's controller remembers: immutable values, safe to share and persist."""

    policy: Any
    guards: GuardState


class PoolController:
    """Pure per-pool decision maker. Holds its spec and policy only; state goes in and out.

    What is not guaranteed without persisted state: a new controller knows nothing of the
    fleet's past. Its guards seed the scale-down window with the size it first sees and hold
    scale-in until rates are measured (see ``autoscaler.core.guards``), but rate-rule history,
    the policy's estimators (``sla``'s rates, burst latch, error budget) and the step policy's
    warmup start empty.
    """

    def __init__(self, spec: PoolSpec, policy: Policy) -> None:
        self.spec = spec
        self.settings = spec.settings()
        self.policy: Policy = policy
        self.guards = Guards(
            spec.capacity, spec.behavior, measure_grace_s=2.0 * spec.interval_s
        )
        self.allocator = Allocator(spec.groups, spec.capacity.on_demand_base)
        self._name = spec.name  # read every tick: a plain attribute

    def initial_state(self) -> ControllerState:
        return ControllerState(self.policy.initial_state(), self.guards.initial_state())

    def decide(
        self, obs: Observation, fleet: FleetState, state: ControllerState
    ) -> tuple[Decision, ControllerState]:
        """One tick: the decision and the state to carry. Records no scale event: call
        ``applied`` once the decision has been carried out."""
        current = fleet.current
        guard_state = self.guards.observe_fleet(state.guards, obs.time, current, fleet.desired)
        ctx = PolicyContext(obs=obs, fleet=fleet, pool=self.settings)
        rec, policy_state = self.policy.recommend(ctx, state.policy)
        guarded = self.guards.apply(obs, current, rec, guard_state)
        targets = self.allocator.allocate(guarded.desired, fleet)
        terms = {**rec.terms, **guarded.terms}
        decision = Decision(
            pool=self._name,
            time=obs.time,
            current=current,
            desired=guarded.desired,
            targets=targets,
            reason=guarded.reason,
            terms=terms,
        )
        return decision, ControllerState(policy_state, guarded.state)

    def applied(self, state: ControllerState, decision: Decision) -> ControllerState:
        """Record that ``decision`` was carried out (at ``decision.time``): the rate rules
        count it from now on. Call it with the state ``decide`` returned, once per resize."""
        guards = self.guards.record(
            state.guards, decision.time, decision.current, decision.desired,
            sum(decision.targets.values()),
        )
        return ControllerState(state.policy, guards)
