"""Live spot fallback on the fake provider, in virtual loop time (``looptime``).

A capacity error moves the shortfall to the next group before the next tick; a group whose
instances stay booting past ``capacity.boot_timeout`` is held unavailable like a stockout;
preempted spot instances are replaced; the way back to spot never dips below desired; the
on-demand base and group floors reach the real actuators. Every time below is exact loop
time (``looptime``), not a measurement.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.core.availability import BootWatch, Holds
from autoscaler.core.model import GroupState, Market
from autoscaler.ports.errors import CapacityUnavailable
from autoscaler.ports.provider import GroupId
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.loop import PoolTick
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeProvider

SPOT = GroupId("chat", "spot")
OD = GroupId("chat", "od")


def config(registries: dict[str, Registry[Any]], capacity: str = "", spot: str = "",
           od: str = "") -> Config:
    registries["providers"].register("fake", FakeProvider)
    text = f"""
controller: {{interval: 1s}}
providers: {{cloud-a: {{kind: fake}}, cloud-b: {{kind: fake}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: q-chat}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 20, boot_time: 10s{capacity}}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: cloud-a, market: spot, hourly_price: 1.0{spot}}}
      - {{name: od, provider: cloud-b, market: on-demand, hourly_price: 4.0{od}}}
"""
    return parse_config(text, registries=registries)


def backlog(n: int) -> None:
    """``n`` requests nobody serves: the threshold policy holds the desired total at ``n``."""
    queue = reset_queue("q-chat")
    for _ in range(n):
        queue.put(time.time(), 1.0)


def running(tick: PoolTick) -> int:
    assert tick.fleet is not None
    return tick.fleet.running


async def run_ticks(daemon: Daemon, seconds: int) -> list[PoolTick]:
    ticks = []
    for _ in range(seconds):
        [tick] = await daemon.loop.tick()
        ticks.append(tick)
        await daemon.loop.settle()
        await asyncio.sleep(1.0)
    return ticks


pytestmark = pytest.mark.looptime


async def test_a_refused_resize_moves_the_shortfall_before_the_next_tick(
    registries: dict[str, Registry[Any]],
) -> None:
    backlog(4)
    daemon = Daemon.build(config(registries), registries=registries)
    await daemon.start()
    a, b = FakeProvider.clients["cloud-a"], FakeProvider.clients["cloud-b"]
    a.fail("resize", CapacityUnavailable("InsufficientInstanceCapacity", account="cloud-a",
                                         group=str(SPOT), operation="resize"))
    t0 = daemon.loop.clock.monotonic()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
        assert tick.decision is not None and dict(tick.decision.targets) == {"spot": 4, "od": 0}
        await daemon.loop.settle()  # no second tick
    assert daemon.loop.clock.monotonic() == t0
    assert b.groups[OD].desired == 4 and a.groups[SPOT].desired == 0
    [moved] = [e for e in logs if e["event"] == "shortfall_moved"]
    assert moved["targets"] == {"spot": 0, "od": 4} and moved["unavailable_group"] == "chat/spot"
    [held] = [e for e in logs if e["event"] == "group_unavailable"]
    assert held["unavailable_for_s"] == 60.0
    # The next tick decides on the held fleet and agrees: nothing moves back within the hold.
    await asyncio.sleep(1.0)
    [tick] = await daemon.loop.tick()
    assert tick.decision is not None and dict(tick.decision.targets) == {"spot": 0, "od": 4}
    assert not tick.changed
    await daemon.close(1.0)


async def test_instances_stuck_booting_time_out_and_the_way_back_is_make_before_break(
    registries: dict[str, Registry[Any]],
) -> None:
    backlog(4)
    daemon = Daemon.build(config(registries), registries=registries)  # boot_timeout 30 s
    await daemon.start()
    a, b = FakeProvider.clients["cloud-a"], FakeProvider.clients["cloud-b"]
    a.stall(SPOT)
    with capture_logs() as logs:
        stuck = await run_ticks(daemon, 45)
        a.stall(SPOT, False)  # capacity is back; the hold (60 s) still runs
        back = await run_ticks(daemon, 60)
    [event] = [e for e in logs if e["event"] == "group_unavailable"]
    assert event["error_class"] == "boot_timeout" and "not running after 30s" in event["error"]
    timed_out = next(i for i, t in enumerate(stuck)
                     if t.fleet is not None and not t.fleet.groups[0].available)
    # Launched after tick 0, first seen booting at tick 1: tick 32 is over 30 s past that.
    assert timed_out == 32
    decision = stuck[timed_out].decision
    assert decision is not None and dict(decision.targets) == {"spot": 0, "od": 4}  # same tick
    last = stuck[-1].decision
    assert running(stuck[-1]) == 4 and last is not None and last.targets["od"] == 4
    # After the hold, spot is asked again while on-demand keeps serving until spot runs.
    assert min(running(t) for t in back) >= 4
    assert back[-1].decision is not None
    assert dict(back[-1].decision.targets) == {"spot": 4, "od": 0}
    assert b.groups[OD].desired == 0 and len(a.live(SPOT)) == 4
    await daemon.close(1.0)


async def test_preempted_spot_is_replaced_and_a_stockout_falls_back_then_returns(
    registries: dict[str, Registry[Any]],
) -> None:
    backlog(4)
    daemon = Daemon.build(config(registries), registries=registries)
    await daemon.start()
    a, b = FakeProvider.clients["cloud-a"], FakeProvider.clients["cloud-b"]
    await run_ticks(daemon, 12)
    assert len(a.live(SPOT)) == 4 and b.groups[OD].desired == 0
    # One interruption with capacity left: the cloud replaces it, on-demand is not touched.
    assert a.preempt(SPOT, 1, notice_s=2.0) == 1
    replaced = await run_ticks(daemon, 12)
    assert running(replaced[-1]) == 4 and b.groups[OD].desired == 0
    assert all(t.decision is not None and t.decision.targets["od"] == 0 for t in replaced)
    # Two more while spot is stocked out: replacements pend, the group is held, on-demand
    # takes the shortfall in the tick that sees it.
    a.set_capacity(SPOT, 2)
    a.preempt(SPOT, 2)
    short = await run_ticks(daemon, 15)
    first = short[0].decision
    assert first is not None and dict(first.targets) == {"spot": 2, "od": 2}
    assert running(short[-1]) == 4 and b.groups[OD].desired == 2
    # Capacity returns: after the hold spot grows back with no dip below the desired 4.
    a.set_capacity(SPOT, None)
    back = await run_ticks(daemon, 70)
    assert min(running(t) for t in back) >= 4
    assert b.groups[OD].desired == 0 and a.groups[SPOT].desired == 4
    await daemon.close(1.0)


async def test_instances_a_cloud_evicts_from_the_group_are_asked_back(
    registries: dict[str, Registry[Any]],
) -> None:
    backlog(4)
    daemon = Daemon.build(config(registries), registries=registries)
    await daemon.start()
    a, b = FakeProvider.clients["cloud-a"], FakeProvider.clients["cloud-b"]
    await run_ticks(daemon, 12)
    assert a.preempt(SPOT, 2, shrink=True) == 2 and a.groups[SPOT].desired == 2
    ticks = await run_ticks(daemon, 1)
    assert ticks[0].submitted == ("spot",)  # the described size differs from the target
    assert a.groups[SPOT].desired == 4 and b.groups[OD].desired == 0
    await run_ticks(daemon, 11)
    assert len(a.live(SPOT)) == 4
    await daemon.close(1.0)


async def test_on_demand_base_and_group_floor_reach_the_groups(
    registries: dict[str, Registry[Any]],
) -> None:
    backlog(5)
    cfg = config(registries, capacity=", min: 1, on_demand_base: 2", spot=", min: 1")
    daemon = Daemon.build(cfg, registries=registries)
    await daemon.start()
    a, b = FakeProvider.clients["cloud-a"], FakeProvider.clients["cloud-b"]
    [tick] = await daemon.loop.tick()
    await daemon.loop.settle()
    assert tick.decision is not None and dict(tick.decision.targets) == {"spot": 3, "od": 2}
    assert a.groups[SPOT].desired == 3 and b.groups[OD].desired == 2
    # Spot stocked out with nothing running: its floor stays asked for, the rest moves.
    await asyncio.sleep(11.0)
    a.set_capacity(SPOT, 0)
    assert a.preempt(SPOT, 3) == 3
    ticks = await run_ticks(daemon, 2)
    decision = ticks[-1].decision
    assert decision is not None and dict(decision.targets) == {"spot": 1, "od": 4}
    await daemon.close(1.0)


def test_holds_double_up_to_fifteen_minutes_and_start_over_after_a_quiet_spell() -> None:
    holds: Holds[str] = Holds()
    now, lengths = 0.0, []
    for _ in range(6):  # fails again as soon as each hold ends
        lengths.append(holds.mark("spot", now, "stockout"))
        assert holds.reason("spot", now + lengths[-1] - 0.5) == "stockout"
        assert holds.reason("spot", now + lengths[-1]) is None
        now += lengths[-1]
    assert lengths == [60.0, 120.0, 240.0, 480.0, 900.0, 900.0]
    assert holds.mark("spot", now + 901.0, "stockout") == 60.0  # 15 min without a failure


def test_boot_watch_times_the_wait_since_the_last_progress() -> None:
    watch: BootWatch[str] = BootWatch(30.0)

    def state(booting: int, running: int, pending: int = 0) -> GroupState:
        return GroupState("g", Market.SPOT, booting + running + pending, booting, running,
                          pending=pending)

    assert watch.observe("g", state(0, 2), 0.0) is None
    assert watch.observe("g", state(2, 2), 1.0) is None  # a scale-up starts the clock
    assert watch.observe("g", state(1, 3), 25.0) is None  # progress: the clock restarts
    assert watch.observe("g", state(1, 3), 55.0) is None  # 30 s exactly is not past it
    reason = watch.observe("g", state(0, 3, pending=1), 55.5)
    assert reason is not None and "1 instance(s) not running after 30s" in reason
    assert watch.observe("g", state(0, 3, pending=1), 60.0) is None  # once per timeout
    assert watch.observe("g", state(0, 4), 61.0) is None


def test_validate_summary_shows_the_spot_knobs(registries: dict[str, Registry[Any]]) -> None:
    from autoscaler.cli.validate import summarize

    cfg = config(registries, capacity=", min: 1, on_demand_base: 1, boot_timeout: 45s",
                 od=", min: 1")
    line = summarize(cfg)[1]
    assert "boot 10s, boot timeout 45s, on-demand base 1;" in line
    assert "od (cloud-b, on-demand, $4/h, min 1)" in line
    assert "boot timeout 30s" in summarize(config(registries))[1]  # 3 x boot_time
