"""``step``: AWS-style step scaling on the oldest request's wait, with an instance warmup.

Bands ``[lower, upper)`` of the oldest wait map to an adjustment of the current count
(running + booting). A wait in no band (a gap) changes nothing. Bounds are in units of the
pool's ``max_wait`` (``unit: max_wait``, the default, so one table fits every pool) or in
seconds (``unit: seconds``). Bands must not overlap, and adjustments must not decrease as the
wait grows (gaps count as 0): a longer wait never asks for fewer instances.

**Estimated instance warmup** (as in EC2 Auto Scaling step scaling). Without it the policy
adds its adjustment again on every tick while the wait stays in a band, and a wait cannot
fall before the first new instance has booted: with 5 s ticks and a 180 s boot, one breach
would add 36 adjustments (the runaway this replaces). So, as AWS does, instances the policy
added in the last ``warmup`` seconds (default: the pool's boot time) are *in progress*:
a breach asks for ``max(0, adjustment - in_progress)`` more, never less than the count it
already has. A repeated breach in the same band adds nothing until the warmup has passed;
a breach in a higher band adds only the difference (in progress +1, wait now in the +4 band:
+3). Scale-out is remembered in the policy's state as ``(obs.time, added)`` pairs, so the
warmup is seconds on the observation's clock, not ticks. Scale-in (negative adjustments) is
not held by the warmup: its pace comes from the guards (each tick asks for one fewer and the
scale-down stabilization window turns that into one step per window).

    desired = current + adjustment                               (adjustment <= 0)
    desired = current + max(0, adjustment - added_within_warmup) (adjustment > 0)

Monotone by construction: the map from adjustment to desired is non-decreasing, and the
adjustment is non-decreasing in the wait.

When the source reports no wait, it is estimated by Little's law as depth / completion_rate;
without that either, the count holds. From zero, any waiting request asks for at least one.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator

from autoscaler.config.durations import Duration
from autoscaler.config.params import PolicyParams
from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext


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
    warmup: Duration | None = Field(
        default=None,
        description="seconds an added instance counts as in progress; default: the boot time",
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


class StepState(NamedTuple):
    """Scale-outs still warming up: ``(obs.time, instances added)``, oldest first."""

    added: tuple[tuple[float, int], ...] = ()


class StepPolicy:
    kind: ClassVar[str] = "step"
    Params: ClassVar[type[PolicyParams]] = StepParams

    def __init__(self, params: StepParams) -> None:
        self.params = params
        self.bands = tuple(sorted(params.steps, key=lambda band: band.lower))

    def initial_state(self) -> StepState:
        return StepState()

    def _band(self, wait: float, scale: float) -> StepBand | None:
        for band in self.bands:
            upper = math.inf if band.upper is None else band.upper * scale
            if band.lower * scale <= wait < upper:
                return band
        return None

    def recommend(self, ctx: PolicyContext, state: StepState) -> tuple[Recommendation, StepState]:
        obs = ctx.obs
        current = ctx.fleet.current
        warmup = ctx.pool.boot_time_s if self.params.warmup is None else self.params.warmup
        # An addition stops counting once ``warmup`` seconds have passed (a warmup of 0 keeps
        # nothing: every tick adds, the behaviour without warmup).
        warming = tuple(a for a in state.added if obs.time - a[0] < warmup)
        in_progress = sum(n for _, n in warming)
        wait = obs.oldest_wait_s
        if wait is None and obs.depth == 0:
            wait = 0.0
        if wait is None and obs.completion_rate:
            wait = obs.depth / obs.completion_rate
        if wait is None:
            n = max(current, 1 if obs.depth > 0 else 0)
            return Recommendation(n, "no wait measured: holding", {}), StepState(warming)
        scale = ctx.pool.max_wait_s if self.params.unit == "max_wait" else 1.0
        band = self._band(wait, scale)
        adjustment = 0 if band is None else band.adjustment
        change = adjustment if adjustment <= 0 else max(0, adjustment - in_progress)
        desired = max(0, current + change)
        if obs.depth > 0:
            desired = max(desired, 1)
        added = min(desired, max(ctx.pool.max_instances, current)) - current
        if added > 0:
            warming = (*warming, (obs.time, added))
        reason = (
            f"oldest wait {wait:.3g}s: {adjustment:+d}"
            + (f", {in_progress} warming up" if adjustment > 0 and in_progress else "")
        )
        terms = {
            "wait": round(wait, 4),
            "adjustment": adjustment,
            "in_progress": in_progress,
            "change": desired - current,
        }
        return Recommendation(desired, reason, terms), StepState(warming)
