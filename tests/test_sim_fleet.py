"""The simulated fleet: spot preemptions and boot times as common random numbers, stockouts
and the fallback to on-demand."""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import pytest

from autoscaler.core.model import Market
from autoscaler.registry import Registry
from autoscaler.simulations.engine import MARKETS, Run
from autoscaler.simulations.fleet import SimFleet
from autoscaler.simulations.preemptions import EventTimeline
from autoscaler.simulations.traces import Trace
from tests.sim_support import poisson_trace, pool_config, run

# ------------------------------------------------- spot preemptions: common random numbers

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


# ---------------------------------------------------------------------- spot: stockouts


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


# ---------------------------------------------------------- boot times: common random numbers

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
