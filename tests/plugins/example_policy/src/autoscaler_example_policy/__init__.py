"""``half-queue``: one instance per ``per_instance`` waiting requests, plus a fixed spare.

An example of a third-party policy: a pure ``recommend`` and a pydantic ``Params`` model are
all a plugin needs; the autoscaler validates its YAML block and wraps it in the guards.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from autoscaler.config.params import PolicyParams
from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext


class HalfQueueParams(PolicyParams):
    per_instance: int = Field(default=2, ge=1, description="waiting requests per instance")
    spare: int = Field(default=0, ge=0, description="instances kept on top")


class HalfQueuePolicy:
    kind: ClassVar[str] = "half-queue"
    Params: ClassVar[type[PolicyParams]] = HalfQueueParams

    def __init__(self, params: HalfQueueParams) -> None:
        self.params = params

    def initial_state(self) -> int:
        return 0

    def recommend(self, ctx: PolicyContext, state: int) -> tuple[Recommendation, int]:
        n = math.ceil(ctx.obs.depth / self.params.per_instance) + self.params.spare
        return Recommendation(n, "half-queue", {"ticks": state + 1}), state + 1
