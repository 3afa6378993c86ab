"""The simulator's queue against closed forms and an independent FCFS reference; every
request served once; seeds, warm-up and what the controller is shown."""

from __future__ import annotations

import heapq
import math
from typing import Any, ClassVar

import numpy as np
import pytest

from autoscaler.config.to_core import controller_for
from autoscaler.core.model import Observation, Recommendation
from autoscaler.core.policy import PolicyContext
from autoscaler.policies.fixed import FixedPolicy
from autoscaler.registry import Registry
from autoscaler.simulations.engine import simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.traces import Trace
from tests.sim_support import (
    AUTOSCALED,
    FIXED,
    bursty_trace,
    poisson_trace,
    pool_config,
    run,
)


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
    result = simulate(pool, 5.0, trace, controller_for(pool, 5.0, policies), label="r",
                      horizon_s=600.0)
    assert result.requeued > 0
    queued = [o for o in Recorder.seen if o.depth == 4 and o.time > 0]  # all four put back
    assert queued
    for obs in queued:
        assert obs.oldest_wait_s == pytest.approx(obs.time)  # arrived at 0
