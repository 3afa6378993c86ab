"""The ``sla`` policy's parameters: a pydantic model, so YAML errors name the line.

Kept apart from ``autoscaler.policies.sla`` so that the policy module holds only plain typed code.
"""

from __future__ import annotations

from pydantic import Field

from autoscaler.config.durations import Duration
from autoscaler.config.params import PolicyParams


class SlaParams(PolicyParams):
    service_time: Duration | None = Field(
        default=None,
        gt=0,
        description="mean seconds one request holds a slot, used until completions are measured",
    )
    service_cv: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="coefficient of variation of service times (1: exponential); queues only "
        "report means, so measure it from your traces",
    )
    budget_share: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="multiplier on the miss budget 1 - target the model sizes for",
    )
    budget_boost: float = Field(
        default=4.0,
        ge=1,
        le=10,
        description="while no misses are seen, size for up to this multiple of the miss "
        "budget (spending the error budget saved so far); back to 1x as misses reach it",
    )
    budget_window: Duration = Field(
        default=300.0, gt=0, description="seconds of memory of the observed miss fraction"
    )
    max_dispersion: float = Field(
        default=30.0, ge=1, description="cap on the measured burstiness (index of dispersion)"
    )
    level_window: Duration = Field(
        default=60.0, gt=0, description="seconds of memory of the arrival-rate level"
    )
    service_window: Duration = Field(
        default=120.0, gt=0, description="seconds of memory of the service-rate estimate"
    )
    trend_window: Duration = Field(
        default=3600.0, gt=0, description="seconds of memory of the offered-load slope"
    )
    dispersion_window: Duration = Field(
        default=600.0, gt=0, description="seconds of memory of the arrival burstiness"
    )
    backlog_floor: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="shortest backlog clearing horizon, as a fraction of max_wait",
    )
    backlog_drain: float = Field(
        default=1 / 3,
        ge=0,
        le=10,
        description="shortest backlog clearing horizon, as a fraction of the boot time: the "
        "backlog left when capacity lands has waited a boot already, and clearing it within "
        "seconds would order a fleet for one tick of work",
    )
    burst_ratio: float = Field(
        default=2.0, gt=1, description="burst when the raw-rate size reaches this x current"
    )
    burst_window: Duration = Field(
        default=60.0, ge=0, description="seconds a burst lasts after its last trigger"
    )
    out_tolerance: float = Field(
        default=1.0,
        ge=1,
        le=10,
        description="scale out (outside bursts and backlogs) only once the current fleet's "
        "predicted miss probability exceeds this multiple of the budget",
    )
    scale_in_margin: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="scale in only to a size that would hold this fraction more load",
    )
    step_window: Duration = Field(
        default=5.0,
        gt=0,
        description="seconds of memory of the short arrival average a load step moves to",
    )
    step_sigma: float = Field(
        default=6.0,
        gt=0,
        description="a load step: the CUSUM of the rate's excess over the level passes this "
        "many standard deviations of one tick's noise (the level then jumps to the short "
        "average)",
    )
    growth_window: Duration = Field(
        default=21600.0,
        gt=0,
        description="seconds of memory of how much the load grows within one boot",
    )
    growth_share: float = Field(
        default=0.5,
        gt=0,
        le=50,
        description="headroom covers all but this multiple of the miss budget of the "
        "horizons' growths (moved by the feedback); below 1 because a horizon that outgrows "
        "the headroom is late for a whole boot, so misses come in lumps and half the budget "
        "is kept for the step larger than any seen",
    )
    feedback_window: Duration = Field(
        default=3600.0,
        gt=0,
        description="seconds of memory of the measured miss share that moves the headroom",
    )
    step_utilisation: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="the fleet holds the load grown by the headroom at this utilisation",
    )
