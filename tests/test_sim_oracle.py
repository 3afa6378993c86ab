"""The future-aware oracle and the lower bound the simulator reports beside the policies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autoscaler.config.models import PoolConfig
from autoscaler.config.to_core import controller_for
from autoscaler.registry import Registry
from autoscaler.simulations.engine import Run, simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.traces import Trace
from tests.sim_support import AUTOSCALED, FIXED, bursty_trace, pool_config, run


def test_lower_bound_and_oracle_are_reported(registries: dict[str, Registry[Any]]) -> None:
    pool = pool_config(registries, AUTOSCALED)
    trace = bursty_trace(6)
    policies = simulation_policies(trace)
    kind = "oracle"
    controller = controller_for(pool, 5.0, policies, kind, policies.get(kind).Params())
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
    controller = controller_for(
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


def test_oracle_drains_a_backlog_it_could_not_prevent(
    registries: dict[str, Registry[Any]],
) -> None:
    """A cold start at ``capacity.min`` under full load queues for a boot whatever anyone
    does; the oracle then orders capacity for that backlog, not just for each bin's arrivals
    from an empty queue (which left it late for many minutes after the boot)."""
    pool = pool_config(registries, STEP_UP)
    rng = np.random.default_rng(7)
    arrival = np.cumsum(rng.exponential(1 / 12.0, 24_000))
    arrival = arrival[arrival < 1800.0]
    trace = Trace("cold", "test", arrival, rng.exponential(2.0, arrival.size))
    oracle = oracle_run(pool, trace)
    # 24 busy slots need 4 instances; the backlog of the first boot needs more for a while.
    assert max(instances_at(oracle, t) for t in oracle.timeline.t) > 4
    after = trace.arrival_s >= 600.0  # two boots after the start, with a bin of margin
    assert np.mean(oracle.waits[after] <= 2.0) >= 0.99
