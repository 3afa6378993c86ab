"""``sla``: size the fleet so that P(wait > max_wait) <= 1 - target, ahead of the boot time.

Inputs per tick (``Observation``): arrival rate r (measured over the source's window), completion
rate, in-flight count, queue depth Q, the oldest request's wait w0. Pool: ``max_wait`` t,
``target`` p (miss budget e = 1 - p), s slots per instance, boot time b, tick interval D. Every
window is seconds on ``obs.time``; a sample's weight is ``w(dt, tau) = 1 - exp(-dt/tau)``, so
ticks may be irregular.

**Service rate per slot** (ratio of time-decayed averages: a tick with 100 busy slots weighs
more than one with 1, and an idle spell keeps the last estimate instead of dividing 0/0)::

    mu = EWMA(completion_rate) / EWMA(in_flight)      over service_window
       = 1 / service_time                             until anything has completed

**Offered load and look-ahead.** The arrival level is an EWMA of r; the offered load is
a = L/mu erlangs. The trend is taken on the load, not on the rate: when the request mix gets
shorter as traffic grows (as in the Azure conversation trace), the rate rises while the load
stays flat, and only the load needs capacity::

    L     <- L + w(dt, level_window) * (r - L)
    a     =  L / mu
    slope <- slope + w(dt, trend_window) * ((a - a_prev)/dt - slope)
    lam   =  (a + max(0, slope) * (b + D)) * mu      (a falling load is never anticipated:
                                                      removing capacity is immediate)

**Burstiness** (index of dispersion of per-tick counts around the level; 1 for Poisson)::

    z = clamp(EWMA((r - L)^2) * D / EWMA(r), 1, max_dispersion)     over dispersion_window

**Erlang C term** (``autoscaler.core.erlang``), searched upward from floor(a) + 1::

    v         = (1 + service_cv^2) / 2                 Allen-Cunneen factor for service times
    P(W > t)  = C(c, a) * exp(-(c*mu - lam) * t / v)  <=  e * budget_share * k
    c_poisson = least c meeting this
    c_erlang  = a + (c_poisson - a) * sqrt(z)          peaked (bursty) arrivals: the safety
                                                       margin grows with sqrt(z) (Hayward)

**Error budget** k: the SLA is a share of requests over time, so a fleet that has not missed
for a while may spend what it saved. The policy keeps, over ``budget_window``, the
arrival-weighted share m of ticks whose queue head is past t (an upper bound on the share of
late requests) and the share ``seen`` of that window it has watched::

    k = 1 + (budget_boost - 1) * seen * max(0, 1 - m / e)

so k is 1 at start-up, grows to ``budget_boost`` while nothing is late, and falls back to 1 as
misses use the budget.

**Backlog term**: the Q waiting requests must start before the head's remaining budget
t - w0 runs out, but new capacity lands only after b. The backlog when it lands, crediting
running slots fully and booting slots for half the boot::

    Q_b = max(0, Q + (lam - s*running*mu)*b - s*booting*mu*b/2)
    H   = max(t - w0 - b, backlog_floor*t, D)     (H = backlog_floor*t when w0 is unknown)
    c_backlog = a + Q_b / (mu*H)                  (serve backlog and new arrivals within H)

**Burst mode** (Knative's panic mode): when the count sized on max(lam, r) reaches
``burst_ratio`` x the current count (running + booting, so capacity already ordered counts and
does not trigger more), the policy sizes on max(lam, r) and never shrinks until
``burst_window`` seconds pass without a trigger. The backlog is still projected with lam: a
seconds-long spike extrapolated over a minutes-long boot would order capacity for traffic that
is gone when it lands.

**Scale-out tolerance and conservative scale-in**: outside bursts and backlogs, the policy
scales out only once the current fleet's predicted miss probability exceeds
``out_tolerance`` x the budget (1 by default: as soon as the model says so); below the current
count it only goes to the size that would still meet the SLA at (1 + ``scale_in_margin``)*lam,
and the guards' scale-down stabilization window then acts on the highest recommendation of its
window::

    desired = min(max, ceil(max(c_erlang, c_backlog) / s))

Without a measured arrival rate or service rate the policy falls back to depth:
desired = ceil((Q + in_flight) / s).

Defaults were chosen once, for both traces, on the Azure LLM inference traces 2023 with a GPU
fleet model (180 s boot, 8 slots per instance, service time from token counts, 5 s ticks);
see the README for the results.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

from pydantic import Field

from autoscaler.core.erlang import min_servers
from autoscaler.core.model import Observation, Recommendation, Term
from autoscaler.core.policy import PolicyContext, PolicyParams, PoolSettings


class SlaParams(PolicyParams):
    service_time: float | None = Field(
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
        default=3.0,
        ge=1,
        le=10,
        description="while no misses are seen, size for up to this multiple of the miss "
        "budget (spending the error budget saved so far); back to 1x as misses reach it",
    )
    budget_window: float = Field(
        default=900.0, gt=0, description="seconds of memory of the observed miss fraction"
    )
    max_dispersion: float = Field(
        default=30.0, ge=1, description="cap on the measured burstiness (index of dispersion)"
    )
    level_window: float = Field(
        default=60.0, gt=0, description="seconds of memory of the arrival-rate level"
    )
    service_window: float = Field(
        default=120.0, gt=0, description="seconds of memory of the service-rate estimate"
    )
    trend_window: float = Field(
        default=3600.0, gt=0, description="seconds of memory of the offered-load slope"
    )
    dispersion_window: float = Field(
        default=600.0, gt=0, description="seconds of memory of the arrival burstiness"
    )
    backlog_floor: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="shortest backlog clearing horizon, as a fraction of max_wait",
    )
    burst_ratio: float = Field(
        default=2.0, gt=1, description="burst when the raw-rate size reaches this x current"
    )
    burst_window: float = Field(
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


class _Weights(NamedTuple):
    level: float
    service: float
    trend: float
    dispersion: float
    budget: float


class SlaPolicy:
    kind: ClassVar[str] = "sla"
    Params: ClassVar[type[PolicyParams]] = SlaParams

    def __init__(self, params: SlaParams) -> None:
        self.params = params
        self._service_variability = (1.0 + params.service_cv**2) / 2
        self._weights: dict[float, _Weights] = {}

    def initial_state(self) -> SlaState:
        return SlaState()

    def _weights_for(self, dt: float) -> _Weights:
        """``1 - exp(-dt/window)`` per window; ticks are regular, so this is a one-entry
        lookup almost every time (bounded: irregular gaps just recompute)."""
        weights = self._weights.get(dt)
        if weights is None:
            p = self.params
            weights = _Weights(
                *(-math.expm1(-dt / w) for w in (
                    p.level_window, p.service_window, p.trend_window, p.dispersion_window,
                    p.budget_window,
                ))
            )
            if len(self._weights) < 64:
                self._weights[dt] = weights
        return weights

    def _update(self, obs: Observation, state: SlaState, max_wait: float) -> SlaState:
        """Advance the estimators to ``obs.time``; a repeated or earlier time updates nothing."""
        first = state.time is None
        dt = 0.0 if first else obs.time - state.time  # type: ignore[operator]
        if not first and dt <= 0:
            return state
        w = None if first else self._weights_for(dt)
        completions, busy = state.completions, state.busy
        if obs.completion_rate is not None and obs.in_flight is not None:
            ws = 1.0 if w is None else w.service
            completions += ws * (max(0.0, obs.completion_rate) - completions)
            busy += ws * (max(0, obs.in_flight) - busy)
        mu = self._service_rate(completions, busy)
        rate, load, slope = state.rate, state.load, state.load_slope
        rate_mean, rate_sq = state.rate_mean, state.rate_sq
        late, offered, seen = state.late, state.offered, state.seen
        if obs.arrival_rate is not None:
            r = max(0.0, obs.arrival_rate)
            if w is not None:
                # Arrival-weighted share of ticks whose queue head is past max_wait: an upper
                # bound on the share of requests missing the SLA, from what a queue reports.
                head = obs.oldest_wait_s
                missing = r if head is not None and head > max_wait else 0.0
                late += w.budget * (missing - late)
                offered += w.budget * (r - offered)
                seen += w.budget * (1.0 - seen)
            if rate is None or w is None:
                rate = r
            else:
                # Burstiness: deviations from the level the tick was forecast at; the level
                # follows slow drifts, so only short-term peakedness remains.
                deviation = r - rate
                rate_mean += w.dispersion * (r - rate_mean)
                rate_sq += w.dispersion * (deviation * deviation - rate_sq)
                rate += w.level * deviation
            if mu is not None:
                new_load = rate / mu
                if load is not None and w is not None:
                    slope += w.trend * ((new_load - load) / dt - slope)
                load = new_load
        return SlaState(
            obs.time, rate, load, slope, completions, busy,
            state.burst_until, state.burst_floor, rate_mean, rate_sq, late, offered,
            seen,
        )

    def _service_rate(self, completions: float, busy: float) -> float | None:
        if busy > 1e-9 and completions > 1e-9:
            return completions / busy
        if self.params.service_time is not None:
            return 1.0 / self.params.service_time
        return None

    def _dispersion(self, state: SlaState, interval: float) -> float:
        """Index of dispersion of arrival counts per tick (1 for Poisson), at least 1."""
        if state.rate_mean <= 1e-9 or interval <= 0:
            return 1.0
        return min(max(1.0, state.rate_sq * interval / state.rate_mean), self.params.max_dispersion)

    def _size(
        self,
        ctx: PolicyContext,
        rate: float,
        planned: float,
        mu: float,
        peakedness: float,
        budget: float = 1.0,
    ) -> tuple[int, int, float]:
        """Instances for arrival rate ``rate``: (instances, erlang slots, backlog slots).

        The backlog is projected over the boot with the ``planned`` rate even when sizing for
        a burst: a few seconds' spike extrapolated over minutes of boot would order a fleet
        for traffic that is long gone when it lands.
        """
        obs, pool, fleet = ctx.obs, ctx.pool, ctx.fleet
        s = pool.slots_per_instance
        upper = max(pool.max_instances, 1) * s
        tail = min(0.5, (1.0 - pool.target) * self.params.budget_share * budget)
        c_poisson = min_servers(
            rate, mu, pool.max_wait_s, tail, upper=upper, variability=self._service_variability
        )
        a = rate / mu
        c_erlang = min(upper, math.ceil(a + max(0.0, c_poisson - a) * peakedness - 1e-9))
        c_backlog = 0.0
        if obs.depth > 0:
            boot = pool.boot_time_s
            landing = (planned - fleet.running * s * mu) * boot - fleet.booting * s * mu * boot / 2
            backlog = obs.depth + landing
            if backlog > 0:
                floor = max(self.params.backlog_floor * pool.max_wait_s, pool.interval_s)
                if obs.oldest_wait_s is None:  # unknown head wait: assume the tightest horizon
                    horizon = floor
                else:
                    horizon = max(pool.max_wait_s - obs.oldest_wait_s - boot, floor)
                c_backlog = rate / mu + backlog / (mu * horizon)
        slots = max(float(c_erlang), c_backlog)
        return min(math.ceil(slots / s - 1e-9), pool.max_instances), c_erlang, c_backlog

    @staticmethod
    def _goal(pool: PoolSettings) -> str:
        return f"P(wait>{pool.max_wait_s:g}s) <= {1 - pool.target:.3g}"

    def _budget(self, state: SlaState, miss_budget: float) -> float:
        """How many times the miss budget to size for.

        Up to ``budget_boost`` once a budget window has passed without misses; the boost
        grows with the share of the window actually observed (``seen``: none is saved before
        anything was watched) and falls linearly to 1 as the observed miss share reaches the
        budget."""
        boost = self.params.budget_boost
        if boost <= 1.0 or state.offered <= 1e-12:
            return 1.0
        used = state.late / (state.offered * miss_budget)
        return 1.0 + (boost - 1.0) * state.seen * max(0.0, 1.0 - used)

    def recommend(self, ctx: PolicyContext, state: SlaState) -> tuple[Recommendation, SlaState]:
        obs, pool = ctx.obs, ctx.pool
        state = self._update(obs, state, pool.max_wait_s)
        mu = self._service_rate(state.completions, state.busy)
        if state.rate is None or state.load is None or obs.arrival_rate is None or mu is None:
            n = min(math.ceil(obs.demand / pool.slots_per_instance), pool.max_instances)
            reason = f"no rate or service measurement: {obs.demand} waiting+in-flight"
            return Recommendation(n, reason, {"mode": "fallback", "demand": obs.demand}), state
        p = self.params
        ahead = max(0.0, state.load_slope) * (pool.boot_time_s + pool.interval_s)
        planned = (state.load + ahead) * mu
        current = ctx.fleet.current
        dispersion = self._dispersion(state, pool.interval_s)
        peakedness = math.sqrt(dispersion)
        budget = self._budget(state, 1.0 - pool.target)
        n, c_erlang, c_backlog = self._size(ctx, planned, planned, mu, peakedness, budget)
        raw = max(planned, obs.arrival_rate)
        n_raw = self._size(ctx, raw, planned, mu, peakedness, budget)[0] if raw > planned else n
        burst_until, floor = state.burst_until, state.burst_floor
        if n_raw > current and n_raw >= p.burst_ratio * max(current, 1):
            burst_until = obs.time + p.burst_window
        in_burst = obs.time < burst_until
        if in_burst:
            n = max(n, n_raw, floor)
            floor = n
            reason = f"burst: sized on {raw:.3g}/s for {self._goal(pool)}"
        else:
            floor = 0
            if n > current and c_backlog <= 0 and p.out_tolerance > 1:
                tolerated = self._size(
                    ctx, planned, planned, mu, peakedness, budget * p.out_tolerance
                )[0]
                if tolerated <= current:
                    n = current
            elif n < current and p.scale_in_margin > 0:
                inflated = planned * (1 + p.scale_in_margin)
                n = min(current, self._size(ctx, inflated, inflated, mu, peakedness, budget)[0])
            reason = f"{planned:.3g}/s at {1 / mu:.3g}s each for {self._goal(pool)}"
        terms: dict[str, Term] = {
            "mode": "burst" if in_burst else "erlang",
            "arrival_rate": planned,
            "service_rate": mu,
            "load_erlangs": state.load,
            "erlang_slots": c_erlang,
            "backlog_slots": c_backlog,
            "dispersion": dispersion,
        }
        if burst_until != state.burst_until or floor != state.burst_floor:
            state = state._replace(burst_until=burst_until, burst_floor=floor)
        return Recommendation(n, reason, terms), state
