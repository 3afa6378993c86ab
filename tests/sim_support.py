"""Shared by the simulator's tests: pool configs from YAML bodies, runs, synthetic traces."""

from __future__ import annotations

from typing import Any

import numpy as np

from autoscaler.config.models import PoolConfig, parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.registry import Registry
from autoscaler.simulations.engine import Run, simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.traces import Trace


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
    controller = controller_for(pool, interval, policies)
    return simulate(pool, interval, trace, controller, label=pool.policy.kind, **kwargs)


def poisson_trace(rate: float, mean_service: float, n: int, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    return Trace("poisson", "test", arrival, rng.exponential(mean_service, n))


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
