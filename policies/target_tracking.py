"""``target-tracking``: HPA's ratio rule on a per-instance metric, with a tolerance.

    ratio   = metric / target
    desired = current                    if |ratio - 1| <= tolerance
            = ⌈current · ratio⌉          otherwise

``current`` counts running and booting instances, so capacity already ordered is not ordered
again. Metrics:

* ``demand`` (default): (depth + in_flight) / current, target in requests per instance
  (default: slots_per_instance). Without tolerance this equals ``threshold``.
* ``waiting``: depth / current, target in requests per instance (default: slots_per_instance).
* ``oldest_wait``: the head of the queue's wait in seconds, target in seconds (default: half of
  max_wait). Not a per-instance average, so the ratio is a proportional controller on wait; an
  unknown wait falls back to ``demand``.

From zero instances the ratio has nothing to multiply: any demand asks for
⌈demand / slots_per_instance⌉ (at least one).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from autoscaler.config.params import PolicyParams
from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext


class TargetTrackingParams(PolicyParams):
    metric: Literal["demand", "waiting", "oldest_wait"] = Field(
        default="demand", description="per-instance demand or waiting, or the oldest wait"
    )
    target: float | None = Field(
        default=None,
        gt=0,
        description="per instance (demand, waiting) or seconds (oldest_wait); see module doc",
    )
    tolerance: float = Field(
        default=0.1, ge=0, lt=1, description="no change while |metric/target - 1| <= this"
    )


class TargetTrackingPolicy:
    kind: ClassVar[str] = "target-tracking"
    Params: ClassVar[type[PolicyParams]] = TargetTrackingParams

    def __init__(self, params: TargetTrackingParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        p, obs, pool = self.params, ctx.obs, ctx.pool
        current = ctx.fleet.current
        slots = float(pool.slots_per_instance)
        metric_name = p.metric
        if metric_name == "oldest_wait" and obs.oldest_wait_s is None:
            metric_name = "demand"
        if current == 0:
            n = math.ceil(obs.demand / slots - 1e-9)
            return Recommendation(n, f"from zero: {obs.demand} waiting+in-flight", {}), None
        if metric_name == "oldest_wait":
            target = p.target or pool.max_wait_s / 2
            metric = obs.oldest_wait_s or 0.0
        else:
            target = p.target or slots
            load = obs.demand if metric_name == "demand" else obs.depth
            metric = load / current
        ratio = metric / target
        terms = {"metric": metric_name, "value": round(metric, 4), "ratio": round(ratio, 4)}
        if abs(ratio - 1.0) <= p.tolerance:
            return Recommendation(current, f"{metric_name} within tolerance", terms), None
        desired = math.ceil(current * ratio - 1e-9)
        reason = f"{metric_name} {metric:.3g} vs target {target:g}: x{ratio:.3g}"
        return Recommendation(desired, reason, terms), None
