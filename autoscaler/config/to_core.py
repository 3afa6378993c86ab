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

STATE_FORMAT = 2
"""Bumped when the persisted record changes layout or meaning (part of every fingerprint).

1: ``{format, fingerprint, saved_wall, state}``. 2: adds ``holds``, ``queue`` and
``baselines`` (see ``autoscaler.runtime.persistence``), kept across fingerprint changes; a
format-1 record is read for nothing (its fingerprint covered the whole spec) and replaced at
the next save."""


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
    """A digest of what makes persisted state meaningful: saved state under another digest is
    discarded at a restart or reload, so it covers only what would make it mislead the new
    config, and nothing else (an operator who edits a price, a bound or a label must not lose
    the pool's windows and estimators, nor wait out a fresh scale-down window for it).

    Covered: ``STATE_FORMAT``; the policy kind and its parameters (its state's type and
    meaning, and the windows, targets and service time its estimators were fitted with); the
    SLA (the ``sla`` policy counts late requests and spends its error budget against
    ``max_wait`` and ``target``); the groups' identity, their names and markets, in order (what
    the fleet the state was learned on was made of: a renamed or re-marketed group is another
    fleet).

    Not covered, because saved state stays true under them: prices and group bounds (the
    allocator reads them each tick), the pool's capacity bounds (the guards apply them last,
    over what their windows say), the behavior windows and rules (the guards prune their
    samples to the windows in force), the tick interval and any labels or provider settings
    (the state holds times and counts, not ticks or settings)."""
    document = {
        "format": STATE_FORMAT,
        "policy": kind,
        "params": params.model_dump(mode="json"),
        "sla": asdict(spec.sla),
        "groups": [[g.name, str(g.market)] for g in spec.groups],
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
