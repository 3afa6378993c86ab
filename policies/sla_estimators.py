"""The ``sla`` policy's estimators: what it learns from each observation.

The formulas are in the ``sla`` policy's docstring (service rate per slot, offered load and its
slope, burstiness, the observed miss share behind the error budget). They live apart from
the sizing so that each module stays readable; ``SlaPolicy`` owns one ``Estimators``.

Every window is seconds on ``obs.time``; a sample's weight is ``w(dt, tau) = 1 -
exp(-dt/tau)``, so ticks may be irregular.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from autoscaler.core.model import Observation
from autoscaler.policies.sla_growth import Growth, GrowthState

STEP_DISPERSION = 2.0  # above this index of dispersion, rate jumps are bursts, not steps
SETTLE_WINDOWS = 3.0  # level and service windows before the load's slope is learned


class SlaState(NamedTuple):
    """Explicit memory: estimator levels and the burst latch, all keyed to ``obs.time``.

    A named tuple: immutable, and about three times cheaper to build than a frozen dataclass,
    which matters at one per pool per tick.
    """

    time: float | None = None
    rate: float | None = None
    load: float | None = None
    load_slope: float = 0.0
    completions: float = 0.0
    busy: float = 0.0
    burst_until: float = -math.inf
    burst_floor: int = 0
    rate_mean: float = 0.0
    rate_sq: float = 0.0
    late: float = 0.0
    offered: float = 0.0
    seen: float = 0.0
    started: float = 0.0  # time of the first observation
    growth: GrowthState = GrowthState()
    fast: float = 0.0  # short EWMA of the arrival rate (``step_window``): a step's new level
    rise: float = 0.0  # CUSUM of the rate's excess over the level, in units of tick noise
    head: float = 0.0  # the queue's oldest wait at the last observation (seconds)
    inflow: float = 0.0  # its depth over that wait: the rate its requests arrived at


def late_rate(
    head: float,
    head_before: float,
    inflow: float,
    inflow_before: float,
    rate: float,
    max_wait: float,
    dt: float,
) -> float:
    """Requests per second that went late during the last ``dt`` seconds (FCFS, fluid).

    The tick's late requests are those of one tick's span of arrivals, ``max_wait``
    earlier, that did not start within ``max_wait``. The ones still queued arrived in the
    span just past max_wait behind the head (the queue's arrivals spread evenly over its
    head wait ``head``, at ``inflow`` = depth / head per second). The rest of the span has
    started since the last tick, late if it started while the head wait exceeded
    max_wait: the head wait is taken to move linearly from ``head_before`` to ``head`` over
    the tick, and that share of the tick is the share of the started ones that went late.
    They entered the queue at its inflow (the larger of the two ticks', at most the
    arrival rate), and the tick's late requests are at most its arrivals.

    Counting only the queued ones missed nearly all of them where the head wait hovers
    just past max_wait: a small fleet that saturates keeps a queue of a few seconds,
    everything waits a little too long, and a head 0.5 s past a 2 s max_wait showed a
    tenth of a 5 s tick's requests as late. The feedback on the growth headroom then
    relaxed through hours that were 1.5-4 % late (the deepseek-r1 day at 0.3x its rate,
    3-8 instances). A queue whose head is past max_wait by a tick or more counts as
    before: nothing of the span has started."""
    over = head - max_wait if head > max_wait else 0.0
    over = over if over < dt else dt
    queued = inflow * over
    hi, lo = (head, head_before) if head > head_before else (head_before, head)
    if hi <= max_wait:
        return queued / dt
    share = 1.0 if lo >= max_wait else (hi - max_wait) / (hi - lo)
    entering = inflow if inflow > inflow_before else inflow_before
    entering = entering if entering < rate else rate
    started = entering * (dt - over) * share
    room = rate * dt - queued
    started = started if started < room else (room if room > 0.0 else 0.0)
    return (queued + started) / dt


class Weights(NamedTuple):
    """``w(dt, window)`` for each window, at one tick length."""

    level: float
    service: float
    trend: float
    dispersion: float
    budget: float
    step: float


class Estimators:
    """Advances an ``SlaState`` and reads the estimates the sizing needs.

    Runs for every pool on every tick: the windows and limits are plain attributes, and
    ``x if x > y else y`` stands for ``max(y, x)`` (same result, NaN included; a call to the
    builtin costs several times more).
    """

    def __init__(
        self,
        *,
        windows: tuple[float, float, float, float, float, float],
        service_time: float | None,
        max_dispersion: float,
        budget_boost: float,
        step_sigma: float,
        growth: Growth,
    ) -> None:
        """``windows``: level, service, trend, dispersion, budget and step windows, in
        seconds."""
        self._windows = windows
        self._step_sigma = step_sigma
        self._growth = growth
        self._service_time = service_time
        self._max_dispersion = max_dispersion
        self._budget_boost = budget_boost
        self._weights: dict[float, Weights] = {}
        # The load is a ratio of two EWMAs that start from their first samples; while they
        # converge (three time constants: 95 %) their movement is not a trend.
        self._settle = SETTLE_WINDOWS * max(windows[0], windows[1])

    def weights_for(self, dt: float) -> Weights:
        """``1 - exp(-dt/window)`` per window; ticks are regular, so this is a one-entry
        lookup almost every time (bounded: irregular gaps just recompute)."""
        weights = self._weights.get(dt)
        if weights is None:
            weights = Weights(*[-math.expm1(-dt / w) for w in self._windows])
            if len(self._weights) < 64:
                self._weights[dt] = weights
        return weights

    def update(
        self, obs: Observation, state: SlaState, max_wait: float, ahead: float, miss_budget: float
    ) -> tuple[SlaState, float | None]:
        """Advance the estimators to ``obs.time`` (a repeated or earlier time updates
        nothing); returns the new state and the service rate per slot. ``ahead`` (boot +
        interval) is the growth horizon, ``miss_budget`` is 1 - target."""
        (
            time, rate, load, slope, completions, busy, burst_until, burst_floor,
            rate_mean, rate_sq, late, offered, seen, started, growth, fast, rise, head_before,
            inflow_before,
        ) = state
        first = time is None
        if first:
            started = obs.time
        dt = 0.0 if first else obs.time - time  # type: ignore[operator]
        if not first and dt <= 0:
            return state, self.service_rate(completions, busy)
        w = None if first else (self._weights.get(dt) or self.weights_for(dt))
        done, in_flight = obs.completion_rate, obs.in_flight
        if done is not None and in_flight is not None:
            ws = 1.0 if w is None else w.service
            completions += ws * ((done if done > 0.0 else 0.0) - completions)
            busy += ws * ((in_flight if in_flight > 0 else 0) - busy)
        mu = self.service_rate(completions, busy)
        r = obs.arrival_rate
        head = obs.oldest_wait_s if obs.oldest_wait_s is not None and obs.depth > 0 else 0.0
        inflow = obs.depth / head if head > 0.0 else 0.0
        if first:
            head_before, inflow_before = head, inflow
        if r is not None:
            r = r if r > 0.0 else 0.0
            if w is not None:
                missing = late_rate(head, head_before, inflow, inflow_before, r, max_wait, dt)
                late += w.budget * (missing - late)
                offered += w.budget * (r - offered)
                seen += w.budget * (1.0 - seen)
            if rate is None or w is None:
                rate = fast = r
                missing = 0.0
            else:
                # Burstiness: deviations from the level the tick was forecast at; the level
                # follows slow drifts, so only short-term peakedness remains.
                deviation = r - rate
                rate_mean += w.dispersion * (r - rate_mean)
                rate_sq += w.dispersion * (deviation * deviation - rate_sq)
                fast += w.step * (r - fast)
                rise = self._rise(rate, r, rise, rate_mean, rate_sq, dt)
                if rise > self._step_sigma:
                    rise = 0.0
                    rate = fast if fast > rate else rate
                else:
                    rate += w.level * deviation
            if mu is not None:
                new_load = rate / mu
                if load is not None and w is not None and obs.time - started >= self._settle:
                    slope += w.trend * ((new_load - load) / dt - slope)
                load = new_load
                if obs.time - started >= self._settle:  # converging estimates are no growth
                    growth = self._growth.tick(
                        growth, obs.time, load, missing * dt, r * dt, ahead, miss_budget
                    )
        new = SlaState._make((
            obs.time, rate, load, slope, completions, busy, burst_until, burst_floor,
            rate_mean, rate_sq, late, offered, seen, started, growth, fast, rise, head, inflow,
        ))
        return new, mu

    @staticmethod
    def _rise(level: float, r: float, rise: float, mean: float, sq: float, dt: float) -> float:
        """Page's CUSUM of the tick's rate above the level, in units of one tick's noise
        ``sqrt(z * level / dt)`` (counts with index of dispersion z; Poisson: 1) less a
        slack of half a unit. The caller calls a step once it exceeds ``step_sigma`` and
        moves the level to the short average at once: a step of s units shows after about
        ``step_sigma / (s - 0.5)`` ticks, where the level (``level_window``) takes about a
        window, longer than a boot can wait. Only rises: a fall costs no lateness, and the
        guards' scale-down window would hold the capacity anyway.

        Peaked traffic (z above ``STEP_DISPERSION``) has no steps to call: its jumps are
        bursts, which the burst mode sizes."""
        if level <= 0.0 or mean <= 1e-9:
            return 0.0
        z = sq * dt / mean
        if z > STEP_DISPERSION:
            return 0.0
        z = z if z > 1.0 else 1.0
        noise = math.sqrt(z * level / dt)
        if noise <= 0.0:  # a level so small that the tick's noise underflows: nothing to test
            return rise
        rise += (r - level) / noise - 0.5
        return rise if rise > 0.0 else 0.0

    def service_rate(self, completions: float, busy: float) -> float | None:
        if busy > 1e-9 and completions > 1e-9:
            return completions / busy
        if self._service_time is not None:
            return 1.0 / self._service_time
        return None

    def dispersion(self, state: SlaState, interval: float) -> float:
        """Index of dispersion of arrival counts per tick (1 for Poisson), at least 1."""
        if state.rate_mean <= 1e-9 or interval <= 0:
            return 1.0
        z = state.rate_sq * interval / state.rate_mean
        z = z if z > 1.0 else 1.0
        cap = self._max_dispersion
        return cap if cap < z else z

    def spare(self, state: SlaState, miss_budget: float) -> float:
        """Requests that may still go late within the budget window: the window's allowed
        misses (the observed share ``seen`` of it) less the ones counted, at least 0."""
        window = self._windows[4]
        spare = (miss_budget * state.offered * state.seen - state.late) * window
        return spare if spare > 0.0 else 0.0

    def budget(self, state: SlaState, miss_budget: float) -> float:
        """How many times the miss budget to size for.

        Up to ``budget_boost`` once a budget window has passed without misses; the boost
        grows with the share of the window actually observed (``seen``: none is saved before
        anything was watched) and falls linearly to 1 as the observed miss share reaches the
        budget."""
        boost = self._budget_boost
        if boost <= 1.0 or state.offered <= 1e-12:
            return 1.0
        used = state.late / (state.offered * miss_budget)
        spare = 1.0 - used
        return 1.0 + (boost - 1.0) * state.seen * (spare if spare > 0.0 else 0.0)
