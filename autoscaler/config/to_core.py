"""Validated config → the decision core's frozen specs, and a policy instance from the registry.

The only place where pydantic models become core values: the daemon, the simulator, the
benchmarks and the tests all build their ``PoolController`` through ``controller_for`` (or
``pool_spec`` + ``build_policy``), so there is one translation to keep right.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from autoscaler.config.models import (
    BehaviorConfig,
    CapacityConfig,
    GroupConfig,
    PoolConfig,
    ScalingBehavior,
)
from autoscaler.config.params import PolicyParams
from autoscaler.core.pipeline import PoolController
from autoscaler.core.policy import Policy
from autoscaler.core.specs import (
    BehaviorSpec,
    CapacitySpec,
    GroupSpec,
    PoolSpec,
    RuleSpec,
    ScalingSpec,
    SlaSpec,
)
from autoscaler.registry import Registry

STATE_FORMAT = 1
"""Bumped when the persisted controller state changes meaning (part of every fingerprint)."""


def scaling_spec(behavior: ScalingBehavior) -> ScalingSpec:
    return ScalingSpec(
        stabilization_window=float(behavior.stabilization_window),
        select=behavior.select,
        rules=tuple(RuleSpec(r.type, r.value, float(r.period)) for r in behavior.rules),
    )


def behavior_spec(behavior: BehaviorConfig) -> BehaviorSpec:
    return BehaviorSpec(
        scale_up=scaling_spec(behavior.scale_up),
        scale_down=scaling_spec(behavior.scale_down),
        scale_to_zero_after=float(behavior.scale_to_zero_after),
    )


def capacity_spec(capacity: CapacityConfig) -> CapacitySpec:
    return CapacitySpec(
        max=capacity.max,
        min=capacity.min,
        slots_per_instance=capacity.slots_per_instance,
        boot_time_s=float(capacity.boot_time),
        initial=capacity.initial_instances,
        on_demand_base=capacity.on_demand_base,
        boot_timeout_s=capacity.boot_timeout_s,
    )


def group_spec(group: GroupConfig) -> GroupSpec:
    return GroupSpec(group.name, group.market, group.hourly_price, group.max, group.min)


def pool_spec(pool: PoolConfig, interval_s: float) -> PoolSpec:
    """The core's view of one pool ticking every ``interval_s`` seconds."""
    return PoolSpec(
        name=pool.name,
        interval_s=float(interval_s),
        sla=SlaSpec(float(pool.sla.max_wait), pool.sla.target),
        capacity=capacity_spec(pool.capacity),
        groups=tuple(group_spec(g) for g in pool.groups),
        behavior=behavior_spec(pool.behavior),
    )


def build_policy(policies: Registry[Any], kind: str, params: PolicyParams) -> Policy:
    """An instance of the registered policy ``kind`` with validated ``params``."""
    policy_cls: type[Policy] = policies.get(kind)
    return policy_cls(params)


def controller_for(
    pool: PoolConfig,
    interval_s: float,
    policies: Registry[Any],
    kind: str | None = None,
    params: PolicyParams | None = None,
) -> PoolController:
    """The pool's controller, with its configured policy unless ``kind``/``params`` override."""
    kind = kind or pool.policy.kind
    params = params if params is not None else pool.policy.params
    return PoolController(pool_spec(pool, interval_s), build_policy(policies, kind, params))


def state_fingerprint(spec: PoolSpec, kind: str, params: PolicyParams) -> str:
    """A digest of what persisted state was computed under: the pool's spec, the policy kind
    and its parameters, and ``STATE_FORMAT``. State saved under another fingerprint is
    discarded (windows and estimators tuned for another config could mislead the new one)."""
    document = {
        "format": STATE_FORMAT,
        "spec": asdict(spec),
        "policy": kind,
        "params": params.model_dump(mode="json"),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
