"""``threshold``: KEDA-style average value, ``target`` requests per instance.

    metric  = depth                 (metric: waiting)
            = depth + in_flight     (metric: demand, the default)
    desired = 0                          if metric <= activation
            = max(1, ⌈metric / target⌉)  otherwise

``activation`` is KEDA's activation threshold: it governs only 0 <-> 1 (at or below it the
scaler is inactive and asks for zero; the guards still wait ``scale_to_zero_after``). The
baseline the flagship ``sla`` policy must beat.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from autoscaler.config.params import PolicyParams
from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext


class ThresholdParams(PolicyParams):
    target: float | None = Field(
        default=None,
        gt=0,
        description="requests (of the metric) per instance; default: slots_per_instance",
    )
    metric: Literal["waiting", "demand"] = Field(
        default="demand", description="waiting: queue depth; demand: depth + in-flight"
    )
    activation: float = Field(
        default=0.0, ge=0, description="metric at or below this asks for zero instances"
    )


class ThresholdPolicy:
    kind: ClassVar[str] = "threshold"
    Params: ClassVar[type[PolicyParams]] = ThresholdParams

    def __init__(self, params: ThresholdParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        p = self.params
        per_instance = p.target or float(ctx.pool.slots_per_instance)
        obs = ctx.obs
        metric = obs.depth if p.metric == "waiting" else obs.demand
        if metric <= p.activation:
            desired = 0
            reason = f"inactive: {p.metric} {metric} <= activation {p.activation:g}"
        else:
            # The epsilon keeps 12 / 0.1-style float noise from adding an instance.
            desired = max(1, math.ceil(metric / per_instance - 1e-9))
            reason = f"{p.metric} {metric} / {per_instance:g} per instance"
        terms = {"metric": metric, "per_instance": per_instance}
        return Recommendation(desired, reason, terms), None
