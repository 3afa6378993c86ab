"""``step``: AWS-style step scaling on the oldest request's wait.

Bands ``[lower, upper)`` of the oldest wait map to an adjustment of the current count
(running + booting)::

    desired = max(0, current + adjustment of the band holding the wait)

A wait in no band (a gap) changes nothing. Bounds are in units of the pool's ``max_wait``
(``unit: max_wait``, the default, so one table fits every pool) or in seconds
(``unit: seconds``). Bands must not overlap, and adjustments must not decrease as the wait
grows (gaps count as 0): a longer wait never asks for fewer instances.

When the source reports no wait, it is estimated by Little's law as depth / completion_rate;
without that either, the count holds. From zero, any waiting request asks for one instance.
Scale-in pace comes from the guards: each tick asks for one fewer, and the scale-down
stabilization window makes that one step per window.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext, PolicyParams


class StepBand(PolicyParams):
    lower: float = Field(ge=0, description="inclusive lower bound of the wait")
    upper: float | None = Field(default=None, description="exclusive upper bound; none: no limit")
    adjustment: int = Field(description="instances to add (negative: remove)")

    @model_validator(mode="after")
    def _ordered(self) -> StepBand:
        if self.upper is not None and self.upper <= self.lower:
            raise ValueError(f"upper ({self.upper:g}) must be greater than lower ({self.lower:g})")
        return self


_DEFAULT_STEPS = (
    StepBand(lower=0.0, upper=0.1, adjustment=-1),
    StepBand(lower=0.5, upper=1.0, adjustment=1),
    StepBand(lower=1.0, upper=2.0, adjustment=2),
    StepBand(lower=2.0, upper=None, adjustment=4),
)


class StepParams(PolicyParams):
    steps: tuple[StepBand, ...] = Field(
        default=_DEFAULT_STEPS,
        min_length=1,
        description="bands {lower, upper, adjustment}; default: <0.1 -1, 0.5-1 +1, 1-2 +2, >=2 +4",
    )
    unit: Literal["max_wait", "seconds"] = Field(
        default="max_wait", description="unit of the band bounds"
    )

    @model_validator(mode="after")
    def _bands(self) -> StepParams:
        bands = sorted(self.steps, key=lambda band: band.lower)
        for before, after in itertools.pairwise(bands):
            if before.upper is None or before.upper > after.lower:
                upper = "inf" if before.upper is None else f"{before.upper:g}"
                raise ValueError(
                    f"steps overlap: [{before.lower:g}, {upper}) and [{after.lower:g}, ...)"
                )
        # The adjustment along the wait axis, gaps included as 0, must never decrease.
        profile: list[tuple[float, int]] = []
        position = 0.0
        for band in bands:
            if band.lower > position:
                profile.append((position, 0))
            profile.append((band.lower, band.adjustment))
            position = math.inf if band.upper is None else band.upper
        if position < math.inf:
            profile.append((position, 0))
        for (w0, a0), (w1, a1) in itertools.pairwise(profile):
            if a1 < a0:
                raise ValueError(
                    f"adjustments must not decrease as the wait grows (gaps mean 0): {a1} from "
                    f"{w1:g} is below {a0} from {w0:g}"
                )
        return self


class StepPolicy:
    kind: ClassVar[str] = "step"
    Params: ClassVar[type[PolicyParams]] = StepParams

    def __init__(self, params: StepParams) -> None:
        self.params = params
        self.bands = tuple(sorted(params.steps, key=lambda band: band.lower))

    def initial_state(self) -> None:
        return None

    def _band(self, wait: float, scale: float) -> StepBand | None:
        for band in self.bands:
            upper = math.inf if band.upper is None else band.upper * scale
            if band.lower * scale <= wait < upper:
                return band
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        obs = ctx.obs
        current = ctx.fleet.current
        wait = obs.oldest_wait_s
        if wait is None and obs.depth == 0:
            wait = 0.0
        if wait is None and obs.completion_rate:
            wait = obs.depth / obs.completion_rate
        if wait is None:
            n = max(current, 1 if obs.depth > 0 else 0)
            return Recommendation(n, "no wait measured: holding", {}), None
        scale = ctx.pool.max_wait_s if self.params.unit == "max_wait" else 1.0
        band = self._band(wait, scale)
        adjustment = 0 if band is None else band.adjustment
        desired = max(0, current + adjustment)
        if obs.depth > 0:
            desired = max(desired, 1)
        reason = f"oldest wait {wait:.3g}s: {adjustment:+d}"
        terms = {"wait": round(wait, 4), "adjustment": adjustment}
        return Recommendation(desired, reason, terms), None
