"""policy → guards → allocator, for one pool; the single decision path for daemon and simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoscaler.config.models import PoolConfig
from autoscaler.core.allocator import Allocator
from autoscaler.core.guards import Guards, GuardState
from autoscaler.core.model import Decision, FleetState, Observation
from autoscaler.core.policy import Policy, PolicyContext, PolicyParams
from autoscaler.registry import Registry


@dataclass(frozen=True, slots=True)
class ControllerState:
    policy: Any
    guards: GuardState


class PoolController:
    """Pure per-pool decision maker. Holds configuration only; state goes in and out."""

    def __init__(
        self,
        pool: PoolConfig,
        interval_s: float,
        policies: Registry[Any],
        policy_kind: str | None = None,
        policy_params: PolicyParams | None = None,
    ) -> None:
        kind = policy_kind or pool.policy.kind
        policy_cls: type[Policy] = policies.get(kind)
        params = policy_params if policy_params is not None else pool.policy.params
        self.pool = pool
        self.settings = pool.settings(interval_s)
        self.policy: Policy = policy_cls(params)
        self.guards = Guards(pool.capacity, pool.behavior)
        self.allocator = Allocator(pool.groups)
        self._name = pool.name  # read every tick: a plain attribute, not the config model

    def initial_state(self) -> ControllerState:
        return ControllerState(self.policy.initial_state(), self.guards.initial_state())

    def decide(
        self, obs: Observation, fleet: FleetState, state: ControllerState
    ) -> tuple[Decision, ControllerState]:
        current = fleet.current
        ctx = PolicyContext(obs=obs, fleet=fleet, pool=self.settings)
        rec, policy_state = self.policy.recommend(ctx, state.policy)
        guarded = self.guards.apply(obs, current, rec, state.guards)
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
        return state
