"""``threshold``: size for the requests waiting and in flight, ``target`` of them per instance.

KEDA-style average value; the baseline the flagship ``sla`` policy must beat.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext, PolicyParams


class ThresholdParams(PolicyParams):
    target: float | None = Field(
        default=None, gt=0, description="requests per instance; default: slots_per_instance"
    )


class ThresholdPolicy:
    kind: ClassVar[str] = "threshold"
    Params: ClassVar[type[PolicyParams]] = ThresholdParams

    def __init__(self, params: ThresholdParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        per_instance = self.params.target or float(ctx.pool.slots_per_instance)
        metric = ctx.obs.demand
        desired = math.ceil(metric / per_instance)
        return (
            Recommendation(
                desired,
                f"{metric} waiting+in-flight / {per_instance:g} per instance",
                {"metric": metric, "per_instance": per_instance},
            ),
            None,
        )
