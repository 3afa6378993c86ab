"""The simulation loop: a simulated clock ticking the daemon's own ``PoolController``.

Per tick, exactly what the daemon does: measure (depth, oldest wait, in-flight, rates from
counter deltas since the previous tick, through the daemon's own ``autoscaler.core.rates``),
describe the fleet, decide, actuate. Between ticks the
compiled kernel serves requests; spot notices and preemptions that fall between ticks are
handled at their own instant (the kernel is advanced to it first). The controller never sees
the future: only the oracle policy, which reads the trace by construction.

The tick grid may be offset against the trace (``phase_s``): a real daemon's grid falls
wherever its start put it, and ``simulate`` draws that offset per seed (``tick_phase``).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscaler.config.models import PoolConfig
from autoscaler.core.model import Market, Observation
from autoscaler.core.pipeline import PoolController
from autoscaler.core.rates import RateMeter
from autoscaler.simulations import kernel
from autoscaler.simulations.budget import BudgetUse, SimBudget
from autoscaler.simulations.fleet import SimFleet
from autoscaler.simulations.kernel import F64
from autoscaler.simulations.preemptions import Preemption
from autoscaler.simulations.traces import Trace

Progress = Callable[[float, float], None]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One row of the report; ``as_json`` is the documented ``--json`` shape."""

    policy: str
    requests: int
    sla_attainment: float
    wait_p50_s: float
    wait_p95_s: float
    wait_p99_s: float
    wait_max_s: float
    instance_hours: float
    cost_usd: float
    scale_actions: int
    preemptions: int
    pool: str = ""
    seed: int = 0
    tick_phase_s: float = 0.0
    counted_s: float = 0.0
    """Length of the counted part of the trace (warm-up end to last arrival): the ``$/h``
    divisor, so a rate is what this trace's traffic costs per hour while it lasts."""
    cost_spot_usd: float = 0.0
    cost_on_demand_usd: float = 0.0
    launch_failures: int = 0
    requeued: int = 0
    unserved: int = 0
    budget: tuple[BudgetUse, ...] = ()
    """Budget use per scope, when the config has budgets (``simulations.budget``)."""
    cost_reserved_usd: float = 0.0
    """Committed instances, billed for the whole counted run whether they served or not."""

    @property
    def cost_per_hour_usd(self) -> float:
        return self.cost_usd * 3600.0 / self.counted_s if self.counted_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The first eleven keys are the original shape; the rest were added later."""
        return {
            "policy": self.policy,
            "requests": self.requests,
            "sla_attainment": round(self.sla_attainment, 4),
            "wait_p50_s": round(self.wait_p50_s, 3),
            "wait_p95_s": round(self.wait_p95_s, 3),
            "wait_p99_s": round(self.wait_p99_s, 3),
            "wait_max_s": round(self.wait_max_s, 3),
            "instance_hours": round(self.instance_hours, 3),
            "cost_usd": round(self.cost_usd, 2),
            "scale_actions": self.scale_actions,
            "preemptions": self.preemptions,
            "pool": self.pool,
            "seed": self.seed,
            "tick_phase_s": round(self.tick_phase_s, 3),
            "cost_spot_usd": round(self.cost_spot_usd, 2),
            "cost_on_demand_usd": round(self.cost_on_demand_usd, 2),
            "cost_per_hour_usd": round(self.cost_per_hour_usd, 4),
            "cost_per_month_usd": round(self.cost_per_hour_usd * HOURS_PER_MONTH, 2),
            "launch_failures": self.launch_failures,
            "requeued": self.requeued,
            "unserved": self.unserved,
            **({"budget": [b.as_json() for b in self.budget]} if self.budget else {}),
            "cost_reserved_usd": round(self.cost_reserved_usd, 2),
        }


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-tick samples for the PNG: ``fleet[tick, market, state]`` with states
    booting/running/draining and markets in ``MARKETS`` order."""

    t: F64
    depth: F64
    in_flight: F64
    fleet: np.ndarray[Any, np.dtype[np.int64]]


MARKETS = (Market.SPOT, Market.ON_DEMAND, Market.RESERVED)
HOURS_PER_MONTH = 720.0
"""A 30-day month: ``$/month`` is ``$/h`` times this."""


def percentiles(values: F64, qs: tuple[float, ...]) -> list[float]:
    """Linear-interpolated percentiles (numpy's default method) by one ``np.partition``.

    ``np.percentile`` gives the same numbers but imports ``numpy.ma`` on first use, a
    noticeable share of a short run's start-up.
    """
    n = values.shape[0]
    ranks = [q / 100.0 * (n - 1) for q in qs]
    kth = sorted({min(int(r) + d, n - 1) for r in ranks for d in (0, 1)})
    part = np.partition(values, kth)
    out = []
    for r in ranks:
        lo = int(r)
        hi = min(lo + 1, n - 1)
        out.append(float(part[lo] + (part[hi] - part[lo]) * (r - lo)))
    return out


def tick_phase(seed: int, interval_s: float) -> float:
    """Where a seed puts the tick grid against the trace, uniform in ``[0, interval)``.

    A daemon's grid starts whenever the daemon starts, and that offset alone moves a short
    result noticeably, so each seed draws one, from its own stream (the seed's other draws are
    unchanged). ``random.Random`` hashes a string seed with SHA-512, so the phase is the same
    on every platform and version, and numpy's generators stay unimported on runs without
    random draws. Pass a fixed phase instead to replay a known daemon run.
    """
    return random.Random(f"autoscaler tick phase {seed}").random() * interval_s


@dataclass(frozen=True, slots=True)
class Run:
    result: PolicyResult
    lower_bound_cost_usd: float
    waits: F64
    done: F64
    end_s: float
    requeued: int
    unserved: int
    launch_failures: int
    timeline: Timeline
    preemption_log: tuple[Preemption, ...] = ()
    """Every spot notice in time order; with common random numbers, the notices on an ordinal
    are the same for every policy that keeps that ordinal occupied."""


def reserved_per_hour(pool: PoolConfig) -> float:
    """What the pool's reserved groups cost per hour, used or not."""
    return sum((g.count or 0) * g.hourly_price for g in pool.groups
               if g.market == Market.RESERVED)


def lower_bound_cost(trace: Trace, pool: PoolConfig, warmup: float) -> float:
    """Busy slot-seconds of counted requests, packed perfectly at the cheapest price, and never
    below the reserved commitment over the counted span (paid whatever the policy does)."""
    counted = trace.arrival_s >= warmup
    busy = float(trace.service_s[counted].sum())
    price = min(g.hourly_price for g in pool.groups)
    packed = busy / pool.capacity.slots_per_instance * price / 3600.0
    committed = reserved_per_hour(pool) * max(0.0, trace.span_s - warmup) / 3600.0
    return max(packed, committed)


class _Loop:
    """State of one run; split from ``simulate`` to keep each step short and named."""

    def __init__(self, pool: PoolConfig, trace: Trace, controller: PoolController, seed: int,
                 budget: SimBudget | None = None):
        self.budget = budget
        self.pool = pool
        self.trace = trace
        self.controller = controller
        self.fleet = SimFleet(pool, seed)
        self.wait: F64 = np.zeros(len(trace))
        self.done: F64 = np.full(len(trace), np.nan)
        self.arrivals = RateMeter()
        self.completions = RateMeter()
        self.samples: list[tuple[float, int, int]] = []
        self.fleet_samples: list[list[int]] = []
        self.actions = 0

    def start(self) -> None:
        initial = self.pool.capacity.initial_instances
        targets = self.controller.allocator.allocate(initial, self.fleet.state(0.0))
        for g, runtime in enumerate(self.fleet.groups):
            runtime.desired = targets.get(runtime.config.name, 0)
            for _ in range(runtime.desired):
                self.fleet.launch(g, 0.0, warm=True)

    def advance(self, t: float) -> None:
        f = self.fleet
        f.sync_heap()
        kernel.advance(
            t, self.trace.arrival_s, self.trace.service_s, self.wait, self.done, f.ist,
            f.rq_id, f.rq_t, f.heap_t, f.heap_s, f.slot_until, f.slot_req,
        )

    def run_to(self, t: float) -> None:
        """Serve requests up to ``t``, stopping at each spot event on the way."""
        fleet = self.fleet
        events = fleet.events
        while events and events[0][0] <= t:
            at, _, kind, uid = heapq.heappop(events)
            if fleet.live(kind, uid, at):
                self.advance(at)
                fleet.handle(kind, uid, at, self.done)
        self.advance(t)
        self.fleet.reap(t)

    def observe(self, t: float) -> Observation:
        f, arrival = self.fleet, self.trace.arrival_s
        arrived = int(np.searchsorted(arrival, t, side="left"))
        q = int(f.ist[kernel.Q_NEXT])
        requeued = int(f.ist[kernel.RQ_COUNT])
        depth = arrived - q + requeued
        oldest: float | None = None
        if depth:
            oldest = t - float(arrival[q]) if q < arrived else 0.0
            if requeued:  # served next, and enqueued at its arrival, as a reclaimed request
                oldest = t - float(arrival[f.rq_id[f.ist[kernel.RQ_HEAD]]])
        busy = int(kernel.in_flight(t, f.slot_until, f.slot_req))
        completed = int(f.ist[kernel.DISPATCHED] - f.ist[kernel.REQUEUED]) - busy
        arrival_rate = self.arrivals.update(t, arrived)
        completion_rate = self.completions.update(t, completed)
        self.samples.append((t, depth, busy))
        return Observation(
            time=t, depth=depth, oldest_wait_s=oldest, in_flight=busy,
            arrival_rate=arrival_rate, completion_rate=completion_rate,
        )

    def tick(self, t: float, state: Any) -> Any:
        obs = self.observe(t)
        fleet_state = self.fleet.view(t)
        decision, state = self.controller.decide(obs, fleet_state, state)
        if self.budget is not None:  # the daemon's cross-pool step, for this one pool
            decision = self.budget.apply(t, decision, fleet_state)
        if decision.changes(fleet_state):
            self.actions += 1
        if self.fleet.actuate(decision.targets, t):
            # A launch failed just now: the shortfall moves in this tick, like the daemon's.
            moved = self.controller.allocator.allocate(decision.desired, self.fleet.view(t))
            self.fleet.actuate(moved, t)
        # The simulated fleet takes every target at once, so every decision is applied.
        state = self.controller.applied(state, decision)
        self.record_fleet(t)
        return state

    def record_fleet(self, t: float) -> None:
        row = [0] * (len(MARKETS) * 3)
        for g, runtime in enumerate(self.fleet.groups):
            m = MARKETS.index(runtime.config.market)
            for k, count in enumerate(self.fleet.counts(g, t)):
                row[m * 3 + k] += count
        self.fleet_samples.append(row)

    def finished(self) -> bool:
        f = self.fleet
        return (
            int(f.ist[kernel.Q_NEXT]) == len(self.trace)
            and int(f.ist[kernel.RQ_COUNT]) == 0
            and self.samples[-1][2] == 0
        )


def simulate(
    pool: PoolConfig,
    interval_s: float,
    trace: Trace,
    controller: PoolController,
    *,
    label: str,
    warmup_s: float = 0.0,
    seed: int = 0,
    phase_s: float = 0.0,
    horizon_s: float | None = None,
    progress: Progress | None = None,
    budget: SimBudget | None = None,
) -> Run:
    """Replay ``trace`` through ``controller`` until every request is served.

    Ticks fall at ``phase_s + k * interval_s`` (k = 1, 2, ...): ``phase_s`` is where the
    daemon's tick grid sits against the trace (``tick_phase`` draws one per seed).

    ``horizon_s`` (default: an hour or ten boot times, whichever is longer) bounds the run past
    the last arrival, so a policy that never scales up still ends; requests not served by then
    are reported as ``unserved`` and count as misses with the wait they had reached.
    """
    loop = _Loop(pool, trace, controller, seed, budget)
    loop.start()
    state = controller.initial_state()
    last = trace.span_s
    if horizon_s is None:
        horizon_s = max(3600.0, 10 * pool.capacity.boot_time)
    limit = last + horizon_s
    t, ticks = 0.0, 0
    while True:
        ticks += 1
        t = phase_s + ticks * interval_s
        loop.run_to(t)
        state = loop.tick(t, state)
        if progress is not None and ticks % 64 == 0:
            progress(min(t, last), last)
        if (t >= last and loop.finished()) or t >= limit:
            break
    return _summarise(loop, label, t, warmup_s, seed, phase_s)


def _summarise(
    loop: _Loop, label: str, end: float, warmup: float, seed: int, phase: float
) -> Run:
    pool, trace, fleet = loop.pool, loop.trace, loop.fleet
    fleet.close(end)
    unserved_mask = np.isnan(loop.done)
    waits = loop.wait.copy()
    stuck = unserved_mask & (trace.arrival_s < end)
    waits[stuck] = np.maximum(waits[stuck], end - trace.arrival_s[stuck])
    counted = trace.arrival_s >= warmup
    w = waits[counted]
    if w.size:
        p50, p95, p99 = percentiles(w, (50, 95, 99))
        attainment = float(np.count_nonzero(w <= pool.sla.max_wait)) / w.size
        wmax = float(w.max())
    else:
        p50 = p95 = p99 = wmax = 0.0
        attainment = 1.0
    hours = 0.0
    by_market = dict.fromkeys(MARKETS, 0.0)
    for use in fleet.usage:
        group = fleet.groups[use.group].config
        if group.market == Market.RESERVED:
            continue  # billed below, for the whole run
        billed = max(0.0, min(use.ended, end) - max(use.launched, warmup)) / 3600.0
        hours += billed
        by_market[group.market] += billed * group.hourly_price
    committed_h = max(0.0, end - warmup) / 3600.0
    by_market[Market.RESERVED] = reserved_per_hour(pool) * committed_h
    hours += sum(g.count or 0 for g in pool.groups if g.market == Market.RESERVED) * committed_h
    cost = sum(by_market.values())
    requeued = int(fleet.ist[kernel.REQUEUED])
    unserved = int(np.count_nonzero(unserved_mask))
    launch_failures = sum(g.launch_failures for g in fleet.groups)
    samples = np.array(loop.samples, dtype=np.float64).reshape(-1, 3)
    result = PolicyResult(
        policy=label,
        requests=int(w.size),
        sla_attainment=attainment,
        wait_p50_s=p50, wait_p95_s=p95, wait_p99_s=p99, wait_max_s=wmax,
        instance_hours=hours,
        cost_usd=cost,
        scale_actions=loop.actions,
        preemptions=sum(g.preemptions for g in fleet.groups),
        pool=pool.name, seed=seed, tick_phase_s=phase,
        counted_s=max(0.0, trace.span_s - warmup),
        cost_spot_usd=by_market[Market.SPOT], cost_on_demand_usd=by_market[Market.ON_DEMAND],
        launch_failures=launch_failures, requeued=requeued, unserved=unserved,
        budget=loop.budget.summary() if loop.budget is not None else (),
        cost_reserved_usd=by_market[Market.RESERVED],
    )
    timeline = Timeline(
        t=samples[:, 0], depth=samples[:, 1], in_flight=samples[:, 2],
        fleet=np.array(loop.fleet_samples, dtype=np.int64).reshape(-1, len(MARKETS), 3),
    )
    return Run(
        result=result,
        lower_bound_cost_usd=lower_bound_cost(trace, pool, warmup),
        waits=waits,
        done=loop.done,
        end_s=end,
        requeued=requeued,
        unserved=unserved,
        launch_failures=launch_failures,
        timeline=timeline,
        preemption_log=tuple(fleet.preempted),
    )
