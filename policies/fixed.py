"""``fixed``: a constant count, for baselines, tests and maintenance windows.

The guards still apply: ``capacity.min``/``max`` bound it and the rate rules pace the change.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from autoscaler.config.params import PolicyParams
from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext


class FixedParams(PolicyParams):
    instances: int = Field(default=1, ge=0, description="the count to hold")


class FixedPolicy:
    kind: ClassVar[str] = "fixed"
    Params: ClassVar[type[PolicyParams]] = FixedParams

    def __init__(self, params: FixedParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        n = self.params.instances
        return Recommendation(n, f"fixed at {n}", {"instances": n}), None
