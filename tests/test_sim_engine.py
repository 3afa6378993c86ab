"""The simulator's queue and fleet against closed forms and an independent FCFS reference."""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import pytest

from autoscaler.config import PoolConfig, parse_config
from autoscaler.core.model import Market
from autoscaler.core.pipeline import PoolController
from autoscaler.registry import Registry
from simulations.engine import MARKETS, Run, simulate
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
