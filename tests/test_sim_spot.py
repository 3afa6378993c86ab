"""Live spot fallback in the simulator: the same allocator, holds and boot watchdog as the
daemon (``autoscaler.core.availability``), on the simulated fleet."""

from __future__ import annotations

from typing import Any

import numpy as np

from autoscaler.core.model import Market
from autoscaler.registry import Registry
from autoscaler.simulations.engine import MARKETS
from autoscaler.simulations.fleet import SimFleet
from tests.sim_support import poisson_trace, pool_config, run

SPOT, OD = MARKETS.index(Market.SPOT), MARKETS.index(Market.ON_DEMAND)
BOOTING, RUNNING = 0, 1


def pool_body(capacity: str = "", spot: str = "", od: str = "", simulation: str = "") -> str:
    return f"""
sla: {{max_wait: 2s, target: 0.99}}
capacity: {{max: 20, slots_per_instance: 4, boot_time: 30s{capacity}}}
policy: {{kind: threshold}}
behavior: {{scale_down: {{stabilization_window: 10s}}}}
groups:
  - name: spot
    provider: local
    market: spot
    hourly_price: 1.0{spot}
    simulation: {{preemptions_per_hour: 2{simulation}}}
  - {{name: od, provider: local, market: on-demand, hourly_price: 4.0{od}}}
"""


def test_a_failed_launch_moves_the_shortfall_in_the_same_tick(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = pool_config(registries, pool_body(simulation=", stockouts: [{start: 0s, end: 1h}]"))
    result = run(pool, poisson_trace(rate=5.0, mean_service=2.0, n=3000, seed=3))
    fleet = result.timeline.fleet
    # The first tick already wants instances (requests wait from t = 0): its spot launches
    # fail and on-demand launches in that very tick, not one tick later.
    assert fleet[0, OD, BOOTING] > 0 and fleet[:, SPOT].sum() == 0
    assert result.launch_failures == 1  # held afterwards: not probed every tick
    assert result.unserved == 0


def test_on_demand_base_is_always_on_demand_and_the_rest_goes_spot(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = pool_config(registries, pool_body(capacity=", min: 2, on_demand_base: 2"))
    result = run(pool, poisson_trace(rate=6.0, mean_service=2.0, n=6000, seed=4))
    live = result.timeline.fleet[:, :, :2].sum(axis=2)  # booting + running, per market
    assert live[:, OD].min() >= 2  # the base, from the warm start on
    assert live[:, SPOT].max() >= 2  # growth past the base went to spot
    assert result.result.preemptions > 0 and result.unserved == 0


def test_group_floors_hold_in_the_simulator(registries: dict[str, Registry[Any]]) -> None:
    body = pool_body(capacity=", min: 3", spot="\n    min: 2", od=", min: 1")
    pool = pool_config(registries, body)
    result = run(pool, poisson_trace(rate=0.2, mean_service=1.0, n=200, seed=5))
    live = result.timeline.fleet[:, :, :2].sum(axis=2)
    assert live[:, OD].min() >= 1
    # Spot's floor of 2 is kept, save for the boot of a replacement after a preemption.
    assert np.count_nonzero(result.timeline.fleet[:, SPOT, RUNNING] >= 2) >= 0.95 * len(live)


def test_stalled_spot_boots_time_out_to_on_demand_and_come_back(
    registries: dict[str, Registry[Any]],
) -> None:
    # Spot accepts launches but brings nothing up for 19 minutes; boot_timeout is 3 x 30 s.
    stall = ", boot_stalls: [{start: 1m, end: 20m}]"
    pool = pool_config(registries, pool_body(capacity=", min: 1", simulation=stall))
    trace = poisson_trace(rate=6.0, mean_service=2.0, n=15_000, seed=6)  # ~42 min
    result = run(pool, trace)
    t, fleet = result.timeline.t, result.timeline.fleet
    stalled = (t > 60 + 90 + 5) & (t < 1200)
    assert fleet[stalled, OD, RUNNING].max() >= 3  # on-demand carried the load
    # Spot boots never finish inside the stall: it is probed after each hold and withdrawn.
    assert fleet[stalled, SPOT, RUNNING].max() <= fleet[t <= 60, SPOT, RUNNING].max()
    after = t > 2000  # the last holds (doubling while the stall lasts) have ended
    assert fleet[after, SPOT, RUNNING].max() >= 3  # spot returned after the stall
    assert result.unserved == 0
    # Without the watchdog the same stall leaves the load waiting on boots that never end.
    blind = pool_config(registries, pool_body(capacity=", min: 1, boot_timeout: 1h",
                                              simulation=stall))
    unwatched = run(blind, trace).result.sla_attainment
    assert result.result.sla_attainment > unwatched + 0.1


def test_the_view_holds_a_stalled_group_and_the_provider_state_does_not(
    registries: dict[str, Registry[Any]],
) -> None:
    body = pool_body(simulation=", boot_stalls: [{start: 0s, end: 10m}]")
    fleet = SimFleet(pool_config(registries, body), seed=0)
    fleet.groups[0].desired = 2
    fleet.reconcile(0, 0.0)
    assert fleet.view(0.0).groups[0].available
    assert fleet.view(90.0).groups[0].available  # 90 s exactly is not past the timeout
    held = fleet.view(91.0).groups[0]
    assert not held.available and "boot timeout" in held.reason and fleet.boot_timeouts == 1
    assert fleet.state(91.0).groups[0].available  # the provider itself reports nothing wrong
    assert not fleet.view(150.0).groups[0].available  # the 60 s hold
    assert fleet.view(151.0).groups[0].available
