"""The simulator's queue and fleet against closed forms and an independent FCFS reference."""

from __future__ import annotations

import heapq
import math
from typing import Any, ClassVar

import numpy as np
import pytest

from autoscaler.config import PoolConfig, parse_config
from autoscaler.core.model import Market, Observation, Recommendation
from autoscaler.core.pipeline import PoolController
from autoscaler.core.policy import PolicyContext
from autoscaler.registry import Registry
from policies.fixed import FixedPolicy
from simulations.engine import MARKETS, Run, simulate
from simulations.fleet import EventTimeline, SimFleet
from simulations.oracle import simulation_policies
from simulations.traces import Trace


def pool_config(
    registries: dict[str, Registry[Any]], body: str, interval: str = "5s"
) -> PoolConfig:
    text = f"controller:\n  interval: {interval}\n"
    text += "pools:\n  - name: p\n    queue: {kind: memory}\n"
    text += "\n".join("    " + line for line in body.strip("\n").splitlines())
    return parse_config(text, registries=registries).pools[0]


FIXED = """
sla: {{max_wait: 2s, target: 0.99}}
capacity: {{min: {n}, max: {n}, slots_per_instance: {slots}, boot_time: 0s}}
policy: {{kind: fixed, instances: {n}}}
groups:
  - {{name: od, provider: local, market: on-demand, hourly_price: 4.0}}
"""


def run(pool: PoolConfig, trace: Trace, interval: float = 5.0, **kwargs: Any) -> Run:
    policies = simulation_policies(trace)
    controller = PoolController(pool, interval, policies)
    return simulate(pool, interval, trace, controller, label=pool.policy.kind, **kwargs)


def poisson_trace(rate: float, mean_service: float, n: int, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    return Trace("poisson", "test", arrival, rng.exponential(mean_service, n))


def reference_fcfs(trace: Trace, servers: int) -> np.ndarray[Any, Any]:
    """Textbook FCFS on c identical servers: the head takes the earliest free server."""
    free = [0.0] * servers
    waits = np.empty(len(trace))
    for k, (a, s) in enumerate(zip(trace.arrival_s, trace.service_s, strict=True)):
        t = heapq.heappop(free)
        start = max(a, t)
        waits[k] = start - a
        heapq.heappush(free, start + s)
    return waits


def test_fixed_capacity_matches_independent_fcfs(registries: dict[str, Registry[Any]]) -> None:
    pool = pool_config(registries, FIXED.format(n=3, slots=4))
    trace = poisson_trace(rate=10.0, mean_service=1.1, n=20_000, seed=1)
    result = run(pool, trace)
    assert np.array_equal(result.waits, reference_fcfs(trace, 12))
    assert result.waits.max() > 0  # the comparison exercised queueing, not an idle fleet


def erlang_c(servers: int, offered: float) -> float:
    """Probability an arrival waits in M/M/c (offered load a = lambda/mu erlangs)."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    bottom = sum(offered**k / math.factorial(k) for k in range(servers)) + top
    return top / bottom


def test_mm_c_steady_state_matches_erlang_c(registries: dict[str, Registry[Any]]) -> None:
    servers, rate, mean = 8, 6.4, 1.0  # rho = 0.8
    pool = pool_config(registries, FIXED.format(n=1, slots=servers))
    trace = poisson_trace(rate, mean, n=600_000, seed=7)
    result = run(pool, trace, warmup_s=1000.0)
    counted = result.waits[trace.arrival_s >= 1000.0]
    p_wait = erlang_c(servers, rate * mean)
    mean_wait = p_wait / (servers / mean - rate)
    assert float(np.mean(counted > 0)) == pytest.approx(p_wait, rel=0.05)
    assert float(counted.mean()) == pytest.approx(mean_wait, rel=0.08)
    # P(W > t) = C * exp(-(c mu - lambda) t)
    assert float(np.mean(counted > 0.5)) == pytest.approx(
        p_wait * math.exp(-(servers / mean - rate) * 0.5), rel=0.1
    )


AUTOSCALED = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 1, max: 30, slots_per_instance: 4, boot_time: 30s, boot_time_spread: 10s}
policy: {kind: threshold}
behavior: {scale_down: {stabilization_window: 10s}}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0
    max: 10
    simulation: {preemptions_per_hour: 30, preemption_notice: 5s}
  - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""


def bursty_trace(seed: int) -> Trace:
    """Alternating busy and silent minutes, so the fleet grows, drains and shrinks."""
    rng = np.random.default_rng(seed)
    parts = [rng.uniform(m * 60, m * 60 + 60, 900) for m in range(0, 20, 2)]
    arrival = np.sort(np.concatenate(parts))
    return Trace("bursty", "test", arrival, rng.exponential(3.0, arrival.size))


def test_every_request_served_exactly_once_through_drains_and_preemptions(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = pool_config(registries, AUTOSCALED)
    trace = bursty_trace(3)
    result = run(pool, trace)
    assert result.unserved == 0
    assert not np.isnan(result.done).any()
    assert np.all(result.done >= trace.arrival_s + result.waits + trace.service_s - 1e-9)
    assert result.result.requests == len(trace)
    assert result.result.preemptions > 0 and result.requeued > 0  # preemption path taken
    draining = result.timeline.fleet[:, :, 2].sum()
    assert draining > 0  # scale-in drained instances while requests were in flight


def test_same_seed_same_result_and_seed_matters(registries: dict[str, Registry[Any]]) -> None:
    pool = pool_config(registries, AUTOSCALED)
    trace = bursty_trace(4)
    a, b, c = run(pool, trace, seed=11), run(pool, trace, seed=11), run(pool, trace, seed=12)
    assert a.result == b.result
    assert np.array_equal(a.waits, b.waits)
    assert c.result != a.result


def test_warmup_requests_are_simulated_but_not_counted(
    registries: dict[str, Registry[Any]],
) -> None:
    cold = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 0, max: 5, slots_per_instance: 4, boot_time: 120s}
policy: {kind: threshold}
groups:
  - {name: od, provider: local, hourly_price: 3.6}
"""
    pool = pool_config(registries, cold)
    trace = poisson_trace(rate=2.0, mean_service=1.0, n=3000, seed=5)
    everything = run(pool, trace)
    warmed = run(pool, trace, warmup_s=300.0)
    counted = int(np.count_nonzero(trace.arrival_s >= 300.0))
    assert warmed.result.requests == counted < everything.result.requests
    assert everything.result.wait_max_s > 100  # the cold start: waiting for the first boot
    assert warmed.result.wait_max_s < everything.result.wait_max_s
    assert warmed.result.sla_attainment > everything.result.sla_attainment
    assert warmed.result.cost_usd < everything.result.cost_usd
    assert np.array_equal(warmed.waits, everything.waits)  # same simulation, other accounting


def test_spot_stockout_falls_back_to_on_demand(registries: dict[str, Registry[Any]]) -> None:
    body = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 0, max: 10, slots_per_instance: 4, boot_time: 20s}
policy: {kind: threshold}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0
    simulation: {stockouts: [{start: 0s, end: 1h}]}
  - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""
    pool = pool_config(registries, body)
    trace = poisson_trace(rate=5.0, mean_service=2.0, n=5000, seed=9)
    result = run(pool, trace)
    spot = result.timeline.fleet[:, MARKETS.index(Market.SPOT)].sum()
    on_demand = result.timeline.fleet[:, MARKETS.index(Market.ON_DEMAND)].sum()
    assert spot == 0 and on_demand > 0  # the allocator saw available=False and went on-demand
    assert result.unserved == 0


def test_lower_bound_and_oracle_are_reported(registries: dict[str, Registry[Any]]) -> None:
    pool = pool_config(registries, AUTOSCALED)
    trace = bursty_trace(6)
    policies = simulation_policies(trace)
    kind = "oracle"
    controller = PoolController(pool, 5.0, policies, kind, policies.get(kind).Params())
    oracle = simulate(pool, 5.0, trace, controller, label=kind)
    busy = trace.service_s.sum() / 4 * 1.0 / 3600
    assert oracle.lower_bound_cost_usd == pytest.approx(busy)
    assert oracle.result.cost_usd >= oracle.lower_bound_cost_usd
    assert "oracle" not in registries["policies"]  # not an entry point


STEP_UP = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 1, max: 20, slots_per_instance: 8, boot_time: 120s, boot_time_spread: 20s}
policy: {kind: threshold}
groups:
  - {name: od, provider: local, market: on-demand, hourly_price: 1.0}
"""


def step_up_trace(seed: int) -> Trace:
    """Poisson arrivals, 2 s service: 1 req/s until 900 s, then 12 req/s until 1800 s.

    Offered load steps from 2 to 24 busy slots: one 8-slot instance, then at least four.
    """
    rng = np.random.default_rng(seed)
    quiet = np.cumsum(rng.exponential(1.0, 1200))
    quiet = quiet[quiet < 900.0]
    busy = 900.0 + np.cumsum(rng.exponential(1 / 12.0, 12_000))
    busy = busy[busy < 1800.0]
    arrival = np.concatenate([quiet, busy])
    return Trace("step-up", "test", arrival, rng.exponential(2.0, arrival.size))


def oracle_run(pool: PoolConfig, trace: Trace, **params: Any) -> Run:
    policies = simulation_policies(trace)
    controller = PoolController(
        pool, 5.0, policies, "oracle", policies.get("oracle").Params(**params)
    )
    return simulate(pool, 5.0, trace, controller, label="oracle")


def instances_at(result: Run, t: float) -> int:
    """Running instances (all markets) at the last tick at or before ``t``."""
    k = int(np.searchsorted(result.timeline.t, t, side="right")) - 1
    return int(result.timeline.fleet[k, :, 1].sum())


@pytest.mark.parametrize("model", ["replay", "erlang"])
def test_oracle_has_capacity_running_when_a_known_load_step_arrives(
    registries: dict[str, Registry[Any]], model: str
) -> None:
    pool = pool_config(registries, STEP_UP)
    trace = step_up_trace(5)
    oracle = oracle_run(pool, trace, model=model)
    # One instance until the step's boot lead; when the step lands, the surge's capacity is
    # already running (3 serve its first minute from an empty queue; 24 busy slots need 4 on).
    assert instances_at(oracle, 900.0 - 120.0 - 90.0) == 1
    assert instances_at(oracle, 900.0) >= 3
    assert instances_at(oracle, 1200.0) >= 4
    assert oracle.result.sla_attainment >= 0.99
    at_step = (trace.arrival_s >= 900.0) & (trace.arrival_s < 960.0)
    assert np.percentile(oracle.waits[at_step], 99) <= 2.0  # no queue at the surge itself
    # An online policy cannot see the step coming: its first minute of surge queues.
    online = run(pool, trace)
    assert np.percentile(online.waits[at_step], 99) > 2.0


@pytest.mark.parametrize("model", ["replay", "erlang"])
def test_oracle_sizes_zero_length_requests_at_the_minimum(
    registries: dict[str, Registry[Any]], model: str
) -> None:
    """Traces may hold requests of no work (a canonical ``service_s`` of 0): no capacity."""
    pool = pool_config(registries, STEP_UP)
    arrival = np.arange(0.0, 600.0, 0.5)
    oracle = oracle_run(pool, Trace("zero", "test", arrival, np.zeros(arrival.size)), model=model)
    assert oracle.result.sla_attainment == 1.0
    assert int(oracle.timeline.fleet[:, :, :2].sum(axis=(1, 2)).max()) == 1  # min, never more


def test_oracle_is_cheaper_than_holding_the_peak(registries: dict[str, Registry[Any]]) -> None:
    """It scales with the load it knows, not to the peak: below a fixed peak-sized fleet."""
    pool = pool_config(registries, STEP_UP)
    trace = step_up_trace(6)
    oracle = oracle_run(pool, trace)
    peak = max(instances_at(oracle, t) for t in oracle.timeline.t)
    fixed = pool_config(registries, FIXED.format(n=peak, slots=8))
    held = run(fixed, trace)
    assert oracle.result.sla_attainment >= 0.99
    assert oracle.result.instance_hours < 0.8 * held.result.instance_hours


# ---------------------------------------------------------------- spot: common random numbers

SPOT_FIXED = """
sla: {{max_wait: 2s, target: 0.99}}
capacity: {{min: {n}, max: {n}, slots_per_instance: 4, boot_time: 30s, boot_time_spread: 10s}}
policy: {{kind: fixed, instances: {n}}}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0
    simulation: {{preemptions_per_hour: {rate}, preemption_notice: 20s}}
"""


def schedule(result: Run, ordinals: int) -> list[tuple[float, str, int]]:
    """(time, group, ordinal) of every notice on the first ``ordinals`` ordinals."""
    return [(p.time, p.group, p.ordinal) for p in result.preemption_log if p.ordinal < ordinals]


def test_policies_see_the_same_preemptions_on_the_ordinals_they_share(
    registries: dict[str, Registry[Any]],
) -> None:
    trace = poisson_trace(rate=2.0, mean_service=1.0, n=14_000, seed=2)  # about two hours
    four = run(pool_config(registries, SPOT_FIXED.format(n=4, rate=2)), trace, seed=5)
    six = run(pool_config(registries, SPOT_FIXED.format(n=6, rate=2)), trace, seed=5)
    shared = schedule(four, 4)
    assert len(shared) >= 8  # 4 instances x 2 h x 2/h: enough notices to compare
    assert schedule(six, 4) == shared
    assert schedule(four, 4) == schedule(four, 6)  # the smaller fleet never used ordinals 4, 5
    assert len(six.preemption_log) > len(shared)  # ordinals 4 and 5 have their own timelines
    assert four.result.preemptions == len(four.preemption_log)
    other_seed = run(pool_config(registries, SPOT_FIXED.format(n=4, rate=2)), trace, seed=6)
    assert schedule(other_seed, 4) != shared
    # Each instance is preempted at most once, and its replacement takes the freed ordinal.
    uids = [p.uid for p in six.preemption_log]
    assert len(uids) == len(set(uids))
    assert {p.ordinal for p in six.preemption_log} == set(range(6))


def test_preemption_rate_is_per_instance_hour(registries: dict[str, Registry[Any]]) -> None:
    """8 spot instances held for ~5.5 h at 3 preemptions per instance-hour: ~130 notices (the
    replacement's 5 s until the next tick is a gap of under 0.5 % of exposure)."""
    trace = poisson_trace(rate=1.0, mean_service=0.5, n=20_000, seed=3)
    pool = pool_config(registries, SPOT_FIXED.format(n=8, rate=3))
    result = run(pool, trace, seed=1)
    exposed_hours = 8 * result.end_s / 3600.0
    expected = 3 * exposed_hours
    assert abs(result.result.preemptions - expected) < 4 * math.sqrt(expected)
    assert result.unserved == 0


def test_event_timeline_is_poisson_and_independent_of_how_it_is_queried() -> None:
    def timeline(seed: int) -> EventTimeline:
        return EventTimeline(10.0, np.random.default_rng(seed))

    dense, sparse = timeline(1), timeline(1)
    events = []
    t = -1.0
    while t < 10_000.0:
        t = dense.first_after(t)
        events.append(t)
    gaps = np.diff(np.array([0.0, *events]))
    assert len(events) == pytest.approx(100_000, rel=0.02)  # rate 10/s over 10,000 s
    assert float(gaps.mean()) == pytest.approx(0.1, rel=0.02)
    assert float(gaps.std()) == pytest.approx(0.1, rel=0.03)  # exponential: sd == mean
    # Far jumps skip whole chunks yet land on the same events as walking through them.
    for probe in (17.3, 2_500.0, 9_999.9):
        k = int(np.searchsorted(events, probe, side="right"))
        assert sparse.first_after(probe) == events[k]
    assert timeline(2).first_after(0.0) != events[0]
    with pytest.raises(ValueError, match="rate must be positive"):
        EventTimeline(0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"query at 1\.0"):
        sparse.first_after(1.0)


# ---------------------------------------------------------------- spot: stockout mid-run

STOCKOUT_MID_RUN = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 1, max: 20, slots_per_instance: 4, boot_time: 30s}
policy: {kind: threshold}
behavior: {scale_down: {stabilization_window: 10s}}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0
    simulation: {stockouts: [{start: 10m, end: 25m}]}
  - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""


def ramp_trace(seed: int) -> Trace:
    """1 req/s for 12 minutes, then 8 req/s (2 s service: 16 busy slots) until minute 40."""
    rng = np.random.default_rng(seed)
    quiet = np.cumsum(rng.exponential(1.0, 800))
    quiet = quiet[quiet < 720.0]
    busy = 720.0 + np.cumsum(rng.exponential(1 / 8.0, 14_000))
    busy = busy[busy < 2400.0]
    arrival = np.concatenate([quiet, busy])
    return Trace("ramp", "test", arrival, rng.exponential(2.0, arrival.size))


def test_stockout_mid_run_moves_growth_to_on_demand_and_back(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = pool_config(registries, STOCKOUT_MID_RUN)
    result = run(pool, ramp_trace(8))
    t, fleet = result.timeline.t, result.timeline.fleet
    spot, od = MARKETS.index(Market.SPOT), MARKETS.index(Market.ON_DEMAND)
    live = fleet[:, :, :2].sum(axis=2)  # booting + running, per market

    def window(a: float, b: float) -> np.ndarray[Any, np.dtype[np.int64]]:
        rows: np.ndarray[Any, np.dtype[np.int64]] = live[(t >= a) & (t < b)]
        return rows

    assert window(0, 600)[:, od].max() == 0  # before: all on spot
    # The fleet must grow at 12 min, inside the window: spot launches fail and are counted,
    # spot holds what it runs, and the shortfall goes on-demand.
    assert result.launch_failures >= 1
    during = window(780, 1500)
    assert during[:, spot].max() == window(590, 600)[:, spot].max()
    assert during[:, od].max() >= 3
    # After the window: growth goes to spot again and on-demand drains away.
    after = window(1560, 2400)
    assert after[:, spot].max() > during[:, spot].max()
    assert after[-1, od] == 0
    assert result.unserved == 0


def test_stockout_shows_only_once_a_launch_has_failed(
    registries: dict[str, Registry[Any]],
) -> None:
    """The provider's view: available until a launch fails in the window, then not until it
    ends; warm (initial) instances are already there and never fail."""
    pool = pool_config(registries, STOCKOUT_MID_RUN)
    fleet = SimFleet(pool, seed=0)
    assert fleet.launch(0, 0.0)
    assert fleet.state(700.0).groups[0].available  # in the window, nobody has tried yet
    assert not fleet.launch(0, 700.0)
    assert fleet.groups[0].launch_failures == 1
    assert not fleet.state(700.0).groups[0].available
    assert not fleet.state(1499.0).groups[0].available
    assert fleet.launch(1, 1499.0)  # on-demand is unaffected
    assert fleet.state(1500.0).groups[0].available  # window over: capacity is back
    assert fleet.launch(0, 1500.0)
    assert fleet.groups[0].launch_failures == 1


def test_which_instance_leaves_does_not_change_later_preemptions(
    registries: dict[str, Registry[Any]],
) -> None:
    """Two fleets of three spot instances each scale in by one, but not the same one: from
    then on, holding two instances (each notice replaced at once), their notices coincide."""
    pool = pool_config(registries, SPOT_FIXED.format(n=3, rate=30))

    def drive(leaving: int) -> list[tuple[float, int]]:
        fleet = SimFleet(pool, seed=3)
        for _ in range(3):
            assert fleet.launch(0, 0.0, warm=True)
        pending = sorted((i.ordinal, i.index) for i in fleet.instances.values())
        fleet.drain(pending[leaving][1], 0.5)  # idle: gone at once, exposure ends with it
        fleet.reap(0.5)
        while fleet.events[0][0] <= 7200.0:
            at, _, kind, uid = heapq.heappop(fleet.events)
            notices = len(fleet.preempted)
            fleet.handle(kind, uid, at, np.zeros(0))
            if len(fleet.preempted) > notices:
                assert fleet.launch(0, at)  # keep two exposed
            fleet.reap(at)
        return [(p.time, p.ordinal) for p in fleet.preempted]

    first, last = drive(0), drive(2)
    assert len(first) > 50  # 2 instances x 2 h x 30/h
    assert first == last
    assert {k for _, k in first} == {0, 1}


BOOT_SPREAD = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 1, max: 10, slots_per_instance: 4, boot_time: 120s, boot_time_spread: 30s}
policy: {kind: fixed, instances: 1}
groups:
  - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""


def test_launches_at_the_same_tick_boot_alike_whatever_came_before(
    registries: dict[str, Registry[Any]],
) -> None:
    """Boot times are common random numbers: the i-th launch at t depends on (seed, t, i)."""
    pool = pool_config(registries, BOOT_SPREAD)

    def boots(launch_times: list[float], seed: int = 5) -> list[tuple[float, float]]:
        fleet = SimFleet(pool, seed=seed)
        for t in launch_times:
            assert fleet.launch(0, t)
        return [(i.launched, i.ready - i.launched) for i in fleet.instances.values()]

    busy = boots([0.0, 0.0, 0.0, 300.0, 300.0, 600.0])
    quiet = boots([300.0, 300.0, 600.0])
    assert busy[3:] == quiet
    assert len({d for _, d in busy[:3]}) == 3  # distinct draws within one tick
    assert all(90.0 <= d <= 150.0 for _, d in busy)
    assert boots([300.0, 300.0, 600.0], seed=6) != quiet


PREEMPTED = """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 1, max: 1, slots_per_instance: 4, boot_time: 60s}
policy: {kind: recorder}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0
    simulation: {preemptions_per_hour: 120, preemption_notice: 5s}
"""


class Recorder(FixedPolicy):
    """``fixed`` at 1 that keeps every observation it is shown."""

    kind = "recorder"
    seen: ClassVar[list[Observation]] = []

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        self.seen.append(ctx.obs)
        return super().recommend(ctx, state)


def test_requeued_requests_show_their_wait_since_arrival(
    registries: dict[str, Registry[Any]],
) -> None:
    """A preempted request goes back to the head of the queue with its original enqueue time
    (as a reclaimed Redis request keeps its payload), so the oldest wait the controller sees
    counts from its arrival, not from when it was put back."""
    registries["policies"].register("recorder", Recorder)
    pool = pool_config(registries, PREEMPTED)
    trace = Trace("long", "test", np.zeros(4), np.full(4, 3000.0))  # 4 requests at t = 0
    policies = simulation_policies(trace, registries["policies"])
    Recorder.seen.clear()
    result = simulate(pool, 5.0, trace, PoolController(pool, 5.0, policies), label="r",
                      horizon_s=600.0)
    assert result.requeued > 0
    queued = [o for o in Recorder.seen if o.depth == 4 and o.time > 0]  # all four put back
    assert queued
    for obs in queued:
        assert obs.oldest_wait_s == pytest.approx(obs.time)  # arrived at 0
