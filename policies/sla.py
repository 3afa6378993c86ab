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
                                      (only after 3 x max(level_window, service_window): the
                                       estimators converging from their first samples is
                                       not a trend)
    lam   =  (a + max(0, slope) * (b + D)) * mu      (a falling load is never anticipated:
                                                      removing capacity is immediate)

**Load steps** (``Estimators``): the level would take about ``level_window`` to follow a step,
longer than a boot can wait. Page's CUSUM of the tick's rate above the level, in units of one
tick's noise sqrt(z * L / D), less a slack of 1/2, calls a step past ``step_sigma``; the level
then jumps to a ``step_window`` average of r. Rises only, and not when z > 2 (peaked traffic's
jumps are bursts, which burst mode sizes).

**Burstiness** (index of dispersion of per-tick counts around the level; 1 for Poisson)::

    z = clamp(EWMA((r - L)^2) * D / EWMA(r), 1, max_dispersion)     over dispersion_window

**Erlang C term** (``autoscaler.core.erlang``), searched upward from floor(a) + 1::

    v         = (1 + service_cv^2) / 2                 Allen-Cunneen factor for service times
    P(W > t)  = C(c, a) * exp(-(c*mu - lam) * t / v)  <=  e * budget_share * k
    c_poisson = least c meeting this
    c_erlang  = a + (c_poisson - a) * sqrt(z)          peaked (bursty) arrivals: the safety
                                                       margin grows with sqrt(z) (Hayward)

**Error budget** k: the SLA is a share of requests over time, so a fleet that has not missed
for a while may spend what it saved. The policy keeps, over ``budget_window``, the share m of
requests that went late and the share ``seen`` of that window it has watched. A queue reports
only its depth Q and head wait w0, so the requests that went late during a tick of length D
are estimated FCFS as one span of arrivals t earlier, the queue's arrivals spread evenly over
w0 (entering at q = Q/w0). Those still queued arrived just past t behind the head; the rest
of the span started since the last tick, late for the share f of the tick in which the head
wait (linear from the last tick's w0' to w0) exceeded t (``late_rate``)::

    o     = min(max(0, w0 - t), D)
    late  = (q*o + min(min(r, max(q, q')) * (D - o) * f, r*D - q*o)) / D     per second
    m     = EWMA(late) / EWMA(r)                       over budget_window
    k     = 1 + (budget_boost - 1) * seen * max(0, 1 - m / e)

so k is 1 at start-up, grows to ``budget_boost`` while nothing is late, and falls back to 1 as
misses use the budget.

**Backlog term**: the Q waiting requests must start before the head's remaining budget
t - w0 runs out, but new capacity lands only after b. The backlog when it lands, crediting
running slots fully and booting slots for half the boot::

    Q_b = max(0, Q + (lam - s*running*mu)*b - s*booting*mu*b/2)
    H   = max(t - w0 - b, backlog_floor*t, backlog_drain*b, D)   (without the first term when
                                                                w0 is unknown)
    c_backlog = a + Q_b / (mu*H)                  (serve backlog and new arrivals within H)

The ``backlog_drain`` floor: the backlog projected to the landing has waited a boot already;
clearing it within seconds would order a fleet for one tick of work.

**Burst mode** (Knative's panic mode): when the count sized on max(lam, r) reaches
``burst_ratio`` x the current count (running + booting, so capacity already ordered counts and
does not trigger more), the policy sizes on max(lam, r) and never shrinks until
``burst_window`` seconds pass without a trigger. A trigger is ignored while at least half the
budget boost is saved (k >= 1 + (budget_boost - 1)/2) and the running fleet starts everything
waiting within max_wait, Q <= max(0, s*running - in_flight) + s*running*mu*t: a batch that
drains in seconds is gone before any boot ends, and a surge that lasts shows as a queue beyond
that a tick later. But a saturated fleet (a queue, no free slot, starting S = s*running*mu
requests a second) is a tick from late: if the surge goes on at the raw rate r until the next
tick (D), a request arriving x seconds on starts after (Q + r*x)/S - x, so those arriving
after x0 = (S*t - Q)/(r - S) wait longer than t. The trigger is left to the fleet only if
that many fit in the spare budget (the requests that may still go late over
``budget_window``)::

    r * max(0, D - x0)  <=  (e * EWMA(r) * seen - EWMA(late)) * budget_window     (r > S)

Without it, which fleet met the next batch depended on the tick phase (a batch seen a tick
earlier or later was absorbed, and the next, larger one found the fleet at its old size).
The backlog is still projected with lam: a seconds-long spike extrapolated
over a minutes-long boot would order capacity for traffic that is gone when it lands.

**Scale-out tolerance and conservative scale-in**: outside bursts and backlogs, the policy
scales out only once the current fleet's predicted miss probability exceeds
``out_tolerance`` x the budget (1 by default: as soon as the model says so); below the current
count it only goes to the size that would still meet the SLA at (1 + ``scale_in_margin``)*lam,
and the guards' scale-down stabilization window then acts on the highest recommendation of its
window::

**Growth headroom** (``autoscaler.policies.sla_growth``, where the model is described): how much
the load grew within one boot, learned online as a histogram; its (1 - p) quantile h, p =
``growth_share`` x e moved by the measured miss share (``feedback_window``), is held over the
recent peak load, a floor under every mode::

    c_grown = held * (1 + h) / (step_utilisation * (1 + t / (b + D)))     (only when z <= 5)

Peaked traffic (z > ``PEAKED``) gets no growth floor: its level averages bursts and silences,
and its growth is a burst's, which burst mode and the sqrt(z) margin size.

**Loose SLAs** (mu * t >= ``LOOSE_SERVICES``): the queue is a buffer, arrivals of one max_wait
are served in the next, and the Erlang size is capped by a fluid one (``_queue_buffered``,
``fcfs_fluid_rate``): the least start rate at which every FCFS wait stays within t when Q wait
and N(u) = lam*u + q*sqrt(z*lam*u) arrive over the next u seconds, q = sqrt(2 ln(1/tail))::

    c_fluid = max over u of (Q + N(u)) / (mu * (t + u))     (closed form: x = sqrt(u) solves
                                                              a quadratic)

    desired = min(max, max(ceil(max(min(c_erlang, c_fluid), c_backlog) / s), ceil(c_grown / s)))

Without a measured arrival rate or service rate the policy falls back to depth:
desired = ceil((Q + in_flight) / s).

Defaults were chosen once, for both traces, on the Azure LLM inference traces 2023 with a GPU
fleet model (180 s boot, 8 slots per instance, service time from token counts, 5 s ticks); the
step, growth and feedback defaults are round values chosen among a few on the ServeGen days
(whose traffic the policy must learn, not be fitted to); see the README for the results.
"""

from __future__ import annotations

import math
from typing import ClassVar

from autoscaler.config.params import PolicyParams
from autoscaler.core.erlang import min_servers, min_servers_bounds
from autoscaler.core.model import FleetState, Observation, Recommendation, Term
from autoscaler.core.policy import PolicyContext, PoolSettings
from autoscaler.policies.sla_estimators import Estimators, SlaState
from autoscaler.policies.sla_growth import Growth
from autoscaler.policies.sla_params import SlaParams
from autoscaler.policies.sla_sizing import (
    LOOSE_SERVICES,
    PEAKED,
    PoolConstants,
    backlog_slots,
    fcfs_fluid_rate,
    instances_for,
    tail_for,
)

__all__ = ["SlaParams", "SlaPolicy", "SlaState", "fcfs_fluid_rate"]


class SlaPolicy:
    """Erlang C sizing with estimators, look-ahead, burst mode and error-budget spending.

    It runs for every pool on every tick, so parameters are copied to plain attributes, the
    per-pool constants are cached, searches whose answer cannot change the decision are
    skipped (``_size_bound``), and ``x if x > y else y`` stands for ``max(y, x)`` (same
    result, NaN included; a call to the builtin costs several times more). None of this
    changes any decision.
    """

    kind: ClassVar[str] = "sla"
    Params: ClassVar[type[PolicyParams]] = SlaParams

    def __init__(self, params: SlaParams) -> None:
        self.params = params
        self._variability = (1.0 + params.service_cv**2) / 2
        self._estimators = Estimators(
            windows=(
                params.level_window,
                params.service_window,
                params.trend_window,
                params.dispersion_window,
                params.budget_window,
                params.step_window,
            ),
            service_time=params.service_time,
            max_dispersion=params.max_dispersion,
            budget_boost=params.budget_boost,
            step_sigma=params.step_sigma,
            growth=Growth(
                growth_window=params.growth_window,
                feedback_window=params.feedback_window,
                share=params.growth_share,
            ),
        )
        self._budget_share = params.budget_share
        self._burst_ratio = params.burst_ratio
        self._burst_window = params.burst_window
        self._out_tolerance = params.out_tolerance
        self._scale_in_margin = params.scale_in_margin
        self._step_utilisation = params.step_utilisation
        boost = params.budget_boost  # spare budget that lets the fleet absorb a spike
        self._absorb_budget = 1.0 + (boost - 1.0) / 2 if boost > 1.0 else math.inf
        self._pool: PoolConstants | None = None

    def initial_state(self) -> SlaState:
        return SlaState()

    def steady_key(self, state: SlaState) -> tuple[float, int]:
        """The burst latch: state saves do not skip its change (a restart within the save
        refresh would otherwise forget a burst and size below its floor). The estimators
        move every tick and are left to the refresh."""
        return state.burst_until, state.burst_floor

    def _constants(self, pool: PoolSettings) -> PoolConstants:
        """A one-entry cache keyed on the settings object itself: the controller passes the
        same one every tick, and another one just recomputes."""
        cached = self._pool
        if cached is not None and cached.settings is pool:
            return cached
        s = pool.slots_per_instance
        cached = self._pool = PoolConstants(
            settings=pool,
            slots=s,
            max_instances=pool.max_instances,
            upper=max(pool.max_instances, 1) * s,
            max_wait=pool.max_wait_s,
            miss_budget=1.0 - pool.target,
            tail=(1.0 - pool.target) * self._budget_share,
            boot=pool.boot_time_s,
            ahead=pool.boot_time_s + pool.interval_s,
            backlog_floor=max(
                self.params.backlog_floor * pool.max_wait_s,
                self.params.backlog_drain * pool.boot_time_s,
                pool.interval_s,
            ),
            grown_utilisation=self._step_utilisation
            * (1.0 + pool.max_wait_s / (pool.boot_time_s + pool.interval_s)),
            interval=pool.interval_s,
            goal=f"P(wait>{pool.max_wait_s:g}s) <= {1 - pool.target:.3g}",
        )
        return cached

    def _size(
        self,
        k: PoolConstants,
        rate: float,
        mu: float,
        peakedness: float,
        budget: float,
        backlog: float | None,
    ) -> tuple[int, int, float]:
        """Instances for arrival rate ``rate``: (instances, erlang slots, backlog slots)."""
        c_poisson = min_servers(
            rate, mu, k.max_wait, tail_for(k, budget), upper=k.upper, variability=self._variability
        )
        return instances_for(k, rate, mu, peakedness, c_poisson, backlog)

    def _size_bound(
        self,
        k: PoolConstants,
        rate: float,
        mu: float,
        peakedness: float,
        budget: float,
        backlog: float | None,
        *,
        upper: bool,
    ) -> int:
        """A lower or upper bound on ``_size(...)[0]`` in O(1), from bounds on the search.

        For sizes that are only compared with the current count: when the comparison holds
        at the bound, the search is skipped without changing any decision."""
        lo, hi = min_servers_bounds(
            rate, mu, k.max_wait, tail_for(k, budget), upper=k.upper, variability=self._variability
        )
        return instances_for(k, rate, mu, peakedness, hi if upper else lo, backlog)[0]

    def _starts_burst(self, n_raw: int, current: int) -> bool:
        """Whether sizing on the raw rate asks for ``burst_ratio`` x the current count."""
        return n_raw > current and n_raw >= self._burst_ratio * (current if current > 1 else 1)

    def _absorbs(
        self,
        k: PoolConstants,
        obs: Observation,
        fleet: FleetState,
        mu: float,
        budget: float,
        spare: float,
    ) -> bool:
        """Whether a burst trigger may be left to the running fleet and the error budget.

        Only while at least half the budget boost is saved: then everything waiting can be
        started within max_wait by the running slots (the free ones at once, the busy ones as
        they complete). A batch that the fleet drains in seconds is gone long before a boot
        ends; a surge that lasts shows up as a queue the fleet cannot absorb a tick later.

        A saturated fleet (a queue and no free slot) is one tick from late whatever the
        queue's size: if the surge goes on at the raw rate r until the next tick, a request
        arriving x seconds on starts (Q + r*x)/S seconds on (S = s*running*mu, fluid FCFS),
        so the arrivals after x0 = (S*t - Q)/(r - S) go late. The trigger is left to the
        fleet only if those fit in the ``spare`` budget (requests, over the budget window):
        otherwise which fleet met the next batch depended on the tick phase (a batch seen a
        tick earlier or later was absorbed, and the next, larger one found the fleet at its
        old size)."""
        if budget < self._absorb_budget:
            return False
        slots = k.slots * fleet.running
        free = slots - (obs.in_flight or 0)
        starts = slots * mu * k.max_wait
        depth = obs.depth
        if depth > (free if free > 0 else 0) + starts:
            return False
        rate, serving = obs.arrival_rate, slots * mu
        if depth > 0 and free <= 0 and rate is not None and rate > serving:
            on_time = (starts - depth) / (rate - serving)  # x0: later arrivals go late
            late = rate * (k.interval - on_time) if on_time < k.interval else 0.0
            return late <= spare
        return True

    def _raw_size(
        self,
        k: PoolConstants,
        in_burst: bool,
        raw: float,
        mu: float,
        peakedness: float,
        budget: float,
        backlog: float | None,
        current: int,
    ) -> int:
        """The size on the raw rate, or 0 when it cannot matter: outside a burst, when even
        its upper bound cannot start one."""
        if not in_burst and not self._starts_burst(
            self._size_bound(k, raw, mu, peakedness, budget, backlog, upper=True), current
        ):
            return 0
        return self._size(k, raw, mu, peakedness, budget, backlog)[0]

    def _tolerated(
        self,
        k: PoolConstants,
        planned: float,
        mu: float,
        peakedness: float,
        budget: float,
        backlog: float | None,
        current: int,
    ) -> bool:
        """Whether the current count meets ``budget`` x the miss budget (``out_tolerance``)."""
        bound = self._size_bound
        if bound(k, planned, mu, peakedness, budget, backlog, upper=True) <= current:
            return True
        if bound(k, planned, mu, peakedness, budget, backlog, upper=False) > current:
            return False
        return self._size(k, planned, mu, peakedness, budget, backlog)[0] <= current

    def _scale_in_size(
        self,
        k: PoolConstants,
        obs: Observation,
        fleet: FleetState,
        inflated: float,
        mu: float,
        peakedness: float,
        budget: float,
        current: int,
    ) -> int:
        """The size at the inflated load, or ``current`` when it surely is no smaller (the
        caller takes the lesser of the two)."""
        backlog = backlog_slots(k, obs, fleet, inflated, mu)
        if self._size_bound(k, inflated, mu, peakedness, budget, backlog, upper=False) >= current:
            return current
        return self._size(k, inflated, mu, peakedness, budget, backlog)[0]

    def _queue_buffered(
        self,
        k: PoolConstants,
        depth: int,
        planned: float,
        mu: float,
        dispersion: float,
        budget: float,
        n: int,
    ) -> int:
        """At most ``n``: the fleet whose FCFS waits stay within max_wait for the queue plus
        the work arriving after it, with a safety margin (a fluid bound), where the wait
        budget spans ``LOOSE_SERVICES`` service times or more.

        There the queue is a buffer: arrivals of one max_wait are served in the next, so
        their count matters (mean lam*u over u seconds, variance z*lam*u), not the instant's
        Erlang margin for no queueing, whose sqrt(z) burstiness term does not shrink with t.
        See ``fcfs_fluid_rate`` for the bound; it only lowers the Erlang size (the backlog
        and growth terms still apply)."""
        # The backlog's random walk has the arrivals' variance (z per unit of rate) plus the
        # services' (service_cv^2): near saturation the latter alone decides whether a queue
        # outgrows max_wait (a fluid bound on arrivals only sized 8 slots for 7.975 erlangs
        # at 0.1 s service, 8 % late against a 1 % budget: found by hypothesis).
        variance = dispersion + 2.0 * self._variability - 1.0
        spread = math.sqrt(2.0 * math.log(1.0 / tail_for(k, budget)) * variance * planned)
        slots = fcfs_fluid_rate(depth, planned, spread, k.max_wait) / mu
        fluid = math.ceil(slots / k.slots - 1e-9)
        return fluid if fluid < n else n

    def recommend(self, ctx: PolicyContext, state: SlaState) -> tuple[Recommendation, SlaState]:
        obs, pool, fleet = ctx.obs, ctx.pool, ctx.fleet
        k = self._constants(pool)
        estimators = self._estimators
        state, mu = estimators.update(obs, state, k.max_wait, k.ahead, k.miss_budget)
        if state.rate is None or state.load is None or obs.arrival_rate is None or mu is None:
            n = min(math.ceil(obs.demand / k.slots), k.max_instances)
            reason = f"no rate or service measurement: {obs.demand} waiting+in-flight"
            return Recommendation(n, reason, {"mode": "fallback", "demand": obs.demand}), state
        slope = state.load_slope
        ahead = (slope if slope > 0.0 else 0.0) * k.ahead
        planned = (state.load + ahead) * mu
        current = fleet.current
        dispersion = estimators.dispersion(state, pool.interval_s)
        peakedness = math.sqrt(dispersion)
        budget = estimators.budget(state, k.miss_budget)
        backlog = backlog_slots(k, obs, fleet, planned, mu) if obs.depth > 0 else None
        n, c_erlang, c_backlog = self._size(k, planned, mu, peakedness, budget, backlog)
        arrivals = obs.arrival_rate
        raw = arrivals if arrivals > planned else planned
        burst_until, floor = state.burst_until, state.burst_floor
        n_raw = n
        if raw > planned:
            n_raw = self._raw_size(
                k, obs.time < burst_until, raw, mu, peakedness, budget, backlog, current
            )
        if self._starts_burst(n_raw, current) and not self._absorbs(
            k, obs, fleet, mu, budget, estimators.spare(state, k.miss_budget)
        ):
            burst_until = obs.time + self._burst_window
        in_burst = obs.time < burst_until
        if in_burst:
            n = max(n, n_raw, floor)
            floor = n
            reason = f"burst: sized on {raw:.3g}/s for {k.goal}"
        else:
            floor = 0
            tolerance, margin = self._out_tolerance, self._scale_in_margin
            if n > current and c_backlog <= 0 and tolerance > 1:
                if self._tolerated(
                    k, planned, mu, peakedness, budget * tolerance, backlog, current
                ):
                    n = current
            elif n < current and margin > 0:
                inflated = planned * (1 + margin)
                scaled_in = self._scale_in_size(
                    k, obs, fleet, inflated, mu, peakedness, budget, current
                )
                n = min(current, scaled_in)
            reason = f"{planned:.3g}/s at {1 / mu:.3g}s each for {k.goal}"
            if mu * k.max_wait >= LOOSE_SERVICES:
                n = self._queue_buffered(k, obs.depth, planned, mu, dispersion, budget, n)
        # Growth headroom, a floor under every mode: the fleet carries the recent peak load
        # grown by what all but a share p of horizons grew, at ``step_utilisation`` (where
        # the Erlang margin for the current load already covers it, it adds nothing).
        # Not for peaked traffic: there the level is an average over bursts and silences,
        # and its growth is a burst's, which burst mode and the sqrt(z) margin size.
        if dispersion <= PEAKED:
            grown = (
                Growth.held(state.growth) * (1.0 + state.growth.headroom) / k.grown_utilisation
            )
            n_grown = math.ceil(grown / k.slots - 1e-9)
            if n_grown > n:
                n = n_grown if n_grown < k.max_instances else k.max_instances
        terms: dict[str, Term] = {
            "mode": "burst" if in_burst else "erlang",
            "arrival_rate": planned,
            "service_rate": mu,
            "load_erlangs": state.load,
            "erlang_slots": c_erlang,
            "backlog_slots": c_backlog,
            "dispersion": dispersion,
            "headroom": state.growth.headroom,
        }
        if burst_until != state.burst_until or floor != state.burst_floor:
            state = state._replace(burst_until=burst_until, burst_floor=floor)
        return Recommendation(n, reason, terms), state
