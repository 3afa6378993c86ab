"""The tick pipeline and the per-group actuators, on the fake provider, in virtual loop time.

``looptime`` fast-forwards the event loop's clock (the daemon's ``LoopClock`` reads it), so a
300 s backoff costs no real time and every time below is exact loop time, not a measurement.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.errors import (
    AutoscalerError,
    CapacityUnavailable,
    ConfigError,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
    error_kind,
)
from autoscaler.ports.provider import GroupId
from autoscaler.registry import Registry
from autoscaler.runtime.actuator import Ticket
from autoscaler.runtime.app import Daemon, run_daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeClient, FakeProvider

pytestmark = pytest.mark.looptime

POOL = """
  - name: {name}
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
{groups}
"""


def make_config(registries: dict[str, Registry[Any]], pools: dict[str, list[str]],
                accounts: str = "{cloud-a: {kind: fake}, cloud-b: {kind: fake}}") -> Config:
    """``pools``: pool name -> group lines; each pool's queue is named after it."""
    registries["providers"].register("fake", FakeProvider)
    text = f"controller: {{interval: 1s}}\nproviders: {accounts}\npools:"
    for name, groups in pools.items():
        lines = "\n".join(f"      - {g}" for g in groups)
        text += POOL.format(name=name, queue=f"q-{name}", groups=lines)
    return parse_config(text, registries=registries)


def backlog(pool: str, n: int) -> None:
    queue = reset_queue(f"q-{pool}")
    for _ in range(n):
        queue.put(time.time(), 1.0)


def cloud(name: str) -> FakeClient:
    return FakeProvider.clients[name]


def resizes(client: FakeClient, group: str | None = None) -> list[Any]:
    return [c for c in client.calls
            if c.operation == "resize" and (group is None or c.groups[0].group == group)]


async def test_throttling_backs_off_and_honours_retry_after(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {"chat": ["{name: g, provider: cloud-a}"]})
    backlog("chat", 3)
    daemon = Daemon.build(config, registries=registries)
    await daemon.start()
    a = cloud("cloud-a")
    a.fail("resize", Throttled("rate exceeded", retry_after_s=30.0), Transient("503"),
           Transient("503"))
    t0 = daemon.loop.clock.monotonic()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
        assert tick.submitted == ("g",)
        await daemon.loop.settle()
    calls = resizes(a)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert calls[0].at == t0 and len(calls) == 4
    assert gaps[0] >= 30.0  # Retry-After, although the first backoff step is 0.5-1 s
    assert 1.0 <= gaps[1] <= 2.0 and 2.0 <= gaps[2] <= 4.0  # exponential, jittered
    assert len({c.request_id for c in calls}) == 1  # retries of one actuation share its id
    assert a.groups[GroupId("chat", "g")].desired == 3
    classes = [e["error_class"] for e in logs if e["event"] == "resize_failed"]
    assert classes == ["throttled", "transient", "transient"]
    await daemon.close(1.0)


async def test_a_slow_group_does_not_delay_another_pools_tick(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {
        "slow": ["{name: g, provider: cloud-a}"],
        "fast": ["{name: g, provider: cloud-b}"],
    }, accounts="{cloud-a: {kind: fake, resize_timeout: 10s}, cloud-b: {kind: fake}}")
    backlog("slow", 2)
    backlog("fast", 2)
    daemon = Daemon.build(config, registries=registries)
    await daemon.start()
    a, b = cloud("cloud-a"), cloud("cloud-b")
    a.delay("resize", 100.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with capture_logs() as logs:
        await daemon.loop.tick()
        assert loop.time() == t0  # the tick awaited neither resize
        await daemon.loop.actuators[GroupId("fast", "g")].settled()
        assert loop.time() == t0 and b.groups[GroupId("fast", "g")].desired == 2
        backlog("fast", 5)
        await asyncio.sleep(1.0)
        await daemon.loop.tick()  # the slow group's call is still in progress
        await daemon.loop.actuators[GroupId("fast", "g")].settled()
        assert b.groups[GroupId("fast", "g")].desired == 5
        assert a.groups[GroupId("slow", "g")].desired == 0 and loop.time() < t0 + 100
        await daemon.loop.settle()
    # Past its 10 s deadline the call was left to finish (never cancelled), then logged.
    events = [e["event"] for e in logs if e.get("group") == "slow/g"]
    assert events == ["resize_overdue", "resize_late_outcome"]
    assert a.groups[GroupId("slow", "g")].desired == 2 and len(resizes(a)) == 1
    await daemon.close(1.0)


@pytest.mark.parametrize("mode", ["raise", "pending"])
async def test_capacity_unavailable_falls_back_to_the_next_group(
    registries: dict[str, Registry[Any]], mode: str,
) -> None:
    config = make_config(registries, {"chat": [
        "{name: spot, provider: cloud-a, market: spot, hourly_price: 1.0, capacity: 0}",
        "{name: od, provider: cloud-b, market: on-demand, hourly_price: 4.0}",
    ]})
    backlog("chat", 4)
    daemon = Daemon.build(config, registries=registries)
    await daemon.start()
    a, b = cloud("cloud-a"), cloud("cloud-b")
    a.capacity_mode = mode  # type: ignore[assignment]
    with capture_logs() as logs:
        [first] = await daemon.loop.tick()
        assert first.decision is not None and dict(first.decision.targets) == {"spot": 4, "od": 0}
        await daemon.loop.settle()
        await asyncio.sleep(1.0)
        [second] = await daemon.loop.tick()
        await daemon.loop.settle()
    assert second.fleet is not None
    spot = second.fleet.group("spot")
    assert spot is not None and not spot.available and "capacity" in spot.reason
    assert second.decision is not None and dict(second.decision.targets) == {"spot": 0, "od": 4}
    assert b.groups[GroupId("chat", "od")].desired == 4
    assert a.groups[GroupId("chat", "spot")].desired == 0  # the pending shortfall withdrawn
    if mode == "raise":
        [event] = [e for e in logs if e["event"] == "group_unavailable"]
        assert event["error_class"] == "capacity_unavailable" and event["group"] == "chat/spot"
    await daemon.close(1.0)


async def test_denied_is_not_retried_in_a_storm(registries: dict[str, Registry[Any]]) -> None:
    config = make_config(registries, {"chat": ["{name: g, provider: cloud-a}"]})
    backlog("chat", 3)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, telemetry=telemetry)
    await daemon.start()
    a = cloud("cloud-a")
    a.fail("resize", *[Denied("not authorized: autoscaling:SetDesiredCapacity")] * 50)
    stop = asyncio.Event()
    with capture_logs() as logs:
        runner = asyncio.create_task(daemon.loop.run(stop))
        await asyncio.sleep(650.0)  # 650 ticks of one second each
        stop.set()
        await runner
    calls = resizes(a)
    assert 2 <= len(calls) <= 3  # at 0 s, then once per 300 s backoff: not once per tick
    assert [c.at - calls[0].at for c in calls][1] >= 300.0
    assert len([e for e in logs if e["event"] == "resize_refused"]) == 1  # logged once
    assert telemetry.registry.get_sample_value("autoscaler_provider_errors_total", {
        "pool": "chat", "group": "g", "operation": "resize", "error": "denied"}) == len(calls)
    await daemon.close(1.0)


async def test_the_latest_target_wins(registries: dict[str, Registry[Any]]) -> None:
    config = make_config(registries, {"chat": ["{name: g, provider: cloud-a}"]})
    backlog("chat", 3)
    daemon = Daemon.build(config, registries=registries)
    await daemon.start()
    a = cloud("cloud-a")
    a.delay("resize", 5.0)
    [tick] = await daemon.loop.tick()  # target 3: in progress for 5 s
    assert tick.decision is not None
    await asyncio.sleep(0)
    actuator = daemon.loop.actuators[GroupId("chat", "g")]
    for seq, target in enumerate((5, 7, 6), start=100):  # queued one after another
        actuator.submit(target, Ticket("chat", tick.decision, seq))
    await daemon.loop.settle()
    assert [c.target for c in resizes(a)] == [3, 6]
    assert a.groups[GroupId("chat", "g")].desired == 6
    await daemon.close(1.0)


async def test_an_account_failing_at_start_does_not_stop_other_pools(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {
        "broken": ["{name: g, provider: cloud-a}"],
        "fine": ["{name: g, provider: cloud-b}"],
    })
    backlog("broken", 1)
    backlog("fine", 1)
    daemon = Daemon.build(config, registries=registries)
    a = cloud("cloud-a")
    assert a.calls == [] and cloud("cloud-b").calls == []  # build does no I/O
    a.fail("start", Denied("no credentials found"))
    with capture_logs() as logs:
        await daemon.start()
        broken, fine = await daemon.loop.tick()
    assert broken.decision is None and "account not started: no credentials found" in (
        broken.errors[0])
    assert fine.acted and fine.decision is not None
    [event] = [e for e in logs if e["event"] == "account_start_failed"]
    assert event["account"] == "cloud-a" and event["error_class"] == "denied"
    acted = []
    for _ in range(10):  # the start is retried in the background after its backoff
        await asyncio.sleep(1.0)
        broken, _ = await daemon.loop.tick()
        acted.append(broken.acted)
    assert a.started and any(acted)
    await daemon.loop.settle()
    assert a.groups[GroupId("broken", "g")].desired == 1
    await daemon.close(1.0)


async def test_applied_is_folded_in_by_the_loop_once_per_decision(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {"chat": [
        "{name: spot, provider: cloud-a, market: spot}", "{name: od, provider: cloud-a}",
    ]})
    backlog("chat", 2)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, telemetry=telemetry)
    [tick] = await daemon.loop.tick()
    [rt] = daemon.loop.pools
    assert tick.submitted == ("spot",) and rt.applied_seq == 0  # submitted, not yet accepted
    outcomes = await daemon.loop.settle()
    assert [o.error for o in outcomes] == [None] and rt.applied_seq == 1
    assert telemetry.registry.get_sample_value(
        "autoscaler_scale_actions_total", {"pool": "chat", "direction": "up"}) == 1
    await daemon.close(1.0)


@pytest.mark.parametrize("refuse", ["conflict", "denied"])
async def test_run_once_waits_for_its_actuations_and_fails_on_a_refused_resize(
    registries: dict[str, Registry[Any]], refuse: str,
) -> None:
    group = f"{{name: g, provider: cloud-a, refuse: {refuse}}}"
    config = make_config(registries, {"chat": [group]})
    backlog("chat", 2)
    out = io.StringIO()
    code = await run_daemon(config, registries=registries, once=True, out=out)
    assert code == 1
    assert f"refused ({refuse})" in out.getvalue() and '"acted": false' in out.getvalue()


async def test_run_once_succeeds_when_the_resize_is_accepted(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {"chat": ["{name: g, provider: cloud-a}"]})
    backlog("chat", 2)
    out = io.StringIO()
    assert await run_daemon(config, registries=registries, once=True, out=out) == 0
    assert '"acted": true' in out.getvalue()
    assert cloud("cloud-a").groups[GroupId("chat", "g")].desired == 2


def test_every_error_class_is_a_provider_error_with_its_place() -> None:
    kinds = []
    for cls in (Throttled, CapacityUnavailable, Denied, NotFound, Conflict, Transient):
        error = cls("boom", account="acc", group="p/g", operation="resize")
        assert isinstance(error, ProviderError) and isinstance(error, AutoscalerError)
        assert str(error) == "account 'acc' group 'p/g' resize: boom"
        kinds.append(error_kind(error))
    assert kinds == ["throttled", "capacity_unavailable", "denied", "not_found", "conflict",
                     "transient"]
    assert error_kind(KeyError("adapter bug")) == "unexpected"
    assert issubclass(ConfigFileError, ConfigError) and issubclass(ConfigError, AutoscalerError)


async def test_account_executor_runs_synchronous_sdk_calls_in_its_own_threads() -> None:
    import threading

    from autoscaler.ports.provider import AccountExecutor

    executor = AccountExecutor("gcp-prod", max_workers=2)
    try:
        name = await executor.run(lambda: threading.current_thread().name)
        total = await executor.run(sum, [1, 2, 3])
    finally:
        executor.shutdown()
    assert name.startswith("gcp-prod") and name != threading.current_thread().name
    assert total == 6


async def test_a_failing_describe_is_counted_every_tick_and_logged_once_per_change(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {"chat": ["{name: g, provider: cloud-a}"]})
    backlog("chat", 1)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, telemetry=telemetry)
    a = cloud("cloud-a")
    down = Transient("503 Service Unavailable", account="cloud-a", operation="describe")
    a.fail("describe", down, down, down, Throttled("slow down", operation="describe"))
    with capture_logs() as logs:
        for _ in range(5):
            await daemon.loop.tick()
            await asyncio.sleep(1.0)
    events = [(e["event"], e.get("error_class")) for e in logs
              if e["event"] in ("provider_error", "provider_recovered")]
    assert events == [("provider_error", "transient"), ("provider_error", "throttled"),
                      ("provider_recovered", None)]
    assert telemetry.registry.get_sample_value("autoscaler_provider_errors_total", {
        "pool": "chat", "group": "g", "operation": "describe", "error": "transient"}) == 3
    await daemon.close(1.0)


async def test_a_stocked_out_group_is_probed_with_a_doubling_hold_not_every_tick(
    registries: dict[str, Registry[Any]],
) -> None:
    config = make_config(registries, {"chat": [
        "{name: spot, provider: cloud-a, market: spot, hourly_price: 1.0, capacity: 0}",
        "{name: od, provider: cloud-b, market: on-demand, hourly_price: 4.0}",
    ]})
    backlog("chat", 4)
    daemon = Daemon.build(config, registries=registries)
    a, b = cloud("cloud-a"), cloud("cloud-b")
    stop = asyncio.Event()
    t0 = daemon.loop.clock.monotonic()
    with capture_logs() as logs:
        runner = asyncio.create_task(daemon.loop.run(stop))
        await asyncio.sleep(200.0)
        stop.set()
        await runner
    probes = [round(c.at - t0) for c in resizes(a) if c.target]
    holds = [e["unavailable_for_s"] for e in logs if e["event"] == "group_unavailable"]
    assert holds == [60.0, 120.0, 240.0][:len(holds)] and len(holds) == 3
    assert len(probes) == 3 and probes[0] == 0 and 60 <= probes[1] <= 63
    assert 180 <= probes[2] <= 186  # 60 s, then 120 s after the second failure
    assert b.groups[GroupId("chat", "od")].desired == 4  # the on-demand group carried it
    await daemon.close(1.0)
