"""The SLA attainment estimate (``autoscaler.core.attainment``): exact cases by hand, and the
estimate against the true attainment of simulated runs (the simulator measures every
request's wait; the estimate sees only what the daemon samples)."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.config.to_core import controller_for
from autoscaler.core.attainment import AttainmentWindow
from autoscaler.core.model import Decision, FleetState, Observation
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.registry import Registry
from autoscaler.simulations.engine import simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.traces import Trace
from tests.sim_support import poisson_trace, pool_config


def obs(t: float, depth: int, wait: float | None, rate: float | None = 1.0) -> Observation:
    return Observation(time=t, depth=depth, oldest_wait_s=wait, arrival_rate=rate)


def test_a_queue_served_in_time_attains_everything() -> None:
    w = AttainmentWindow(max_wait_s=2.0)
    assert w.observe(obs(0.0, 0, None)) is None  # nothing seen yet
    for t in range(1, 20):
        est = w.observe(obs(float(t), 1, 0.5))
    assert est == 1.0


def test_a_stuck_queue_counts_what_waits_beyond_max_wait() -> None:
    """Nothing starts for 10 s at 1 request/s: the head ages from 0 to 10 s; at 10 s the
    requests waiting longer than 2 s (8 of them) will start late, and nothing else started."""
    w = AttainmentWindow(max_wait_s=2.0)
    for t in range(11):
        est = w.observe(obs(float(t), t, float(t)))
    assert est == 0.0
    # Then the fleet catches up within a second: the 11 requests that arrived over 11 s start,
    # their waits spread from 10 s down to 0, above 2 s for 80 % of them.
    est = w.observe(obs(11.0, 0, 0.0))
    assert est == pytest.approx(1 - 0.8 * 11 / 11, abs=1e-9)


def test_old_ticks_leave_the_window() -> None:
    w = AttainmentWindow(max_wait_s=2.0, window_s=30.0)
    for t in range(11):
        w.observe(obs(float(t), t, float(t)))
    w.observe(obs(11.0, 0, 0.0))
    for t in range(12, 60):
        est = w.observe(obs(float(t), 1, 0.1))
    assert est == 1.0


def test_unknown_and_stale_observations_add_nothing() -> None:
    w = AttainmentWindow(max_wait_s=2.0)
    w.observe(obs(0.0, 1, 0.1))
    w.observe(obs(1.0, 1, 0.1))
    before = w.estimate()
    assert w.observe(obs(2.0, 5, None)) == before
    stale = Observation(time=3.0, depth=5, oldest_wait_s=50.0, arrival_rate=1.0, fresh=False)
    assert w.observe(stale) == before


class Watching(PoolController):
    """The daemon's own controller, also feeding each observation to an estimate."""

    window: AttainmentWindow

    def decide(self, obs: Observation, fleet: FleetState,
               state: ControllerState) -> tuple[Decision, ControllerState]:
        self.window.observe(obs)
        return super().decide(obs, fleet, state)


BODY = """
sla: {{max_wait: 2s, target: 0.99}}
capacity: {{min: 1, max: {max}, slots_per_instance: 1, boot_time: 20s}}
policy: {{kind: threshold}}
behavior: {{scale_down: {{stabilization_window: 30s}}}}
groups:
  - {{name: od, provider: local, hourly_price: 1.0}}
"""


def bursty_trace() -> Trace:
    calm = poisson_trace(rate=1.0, mean_service=2.0, n=1200, seed=5)
    burst = poisson_trace(rate=6.0, mean_service=2.0, n=1800, seed=6)
    arrival = sorted([*calm.arrival_s, *(burst.arrival_s + 400.0)])
    import numpy as np

    rng = np.random.default_rng(7)
    return Trace("bursty", "test", np.array(arrival), rng.exponential(2.0, len(arrival)))


@pytest.mark.parametrize("max_instances", [4, 8, 30])
def test_the_estimate_tracks_the_simulated_truth(
    registries: dict[str, Registry[Any]], max_instances: int
) -> None:
    """Three fleets from starved to ample on one bursty trace: the estimate over the whole run
    lands within 2 points of the attainment the simulator measured request by request."""
    pool = pool_config(registries, BODY.format(max=max_instances), interval="1s")
    trace = bursty_trace()
    base = controller_for(pool, 1.0, simulation_policies(trace))
    controller = Watching(base.spec, base.policy)
    controller.window = AttainmentWindow(2.0, window_s=1e9)
    run = simulate(pool, 1.0, trace, controller, label="threshold")
    estimate = controller.window.estimate()
    assert estimate is not None
    print(f"max {max_instances}: true {run.result.sla_attainment:.4f} estimate {estimate:.4f}")
    assert estimate == pytest.approx(run.result.sla_attainment, abs=0.02)


async def test_the_daemon_exports_the_estimate(registries: dict[str, Registry[Any]]) -> None:
    from autoscaler.config.models import parse_config
    from autoscaler.ports.clock import ManualClock
    from autoscaler.runtime.app import Daemon
    from autoscaler.runtime.metrics import PrometheusTelemetry
    from autoscaler.sources.memory import reset_queue

    clock = ManualClock()
    queue = reset_queue("att-daemon")
    config = parse_config("""
controller: {interval: 1s, state_store: none}
pools:
  - name: chat
    queue: {kind: memory, name: att-daemon}
    sla: {max_wait: 2s}
    capacity: {min: 0, max: 2}
    groups: [{name: g, provider: local}]
""", registries=registries)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, clock=clock, telemetry=telemetry,
                          dry_run=True)

    def gauge() -> float | None:
        return telemetry.registry.get_sample_value("autoscaler_sla_attainment_estimate",
                                                   {"pool": "chat"})

    await daemon.loop.tick()
    assert gauge() != gauge()  # NaN: nothing to go on yet
    for _ in range(5):  # one request a second, nobody serving it (a dry run starts nothing)
        queue.put(clock.wall(), 1.0)
        clock.advance(1.0)
        await daemon.loop.tick()
    value = gauge()
    assert value is not None and 0.0 <= value < 1.0  # the head is 5 s old: late
    await daemon.close(1.0)
