"""The daemon's tick, grid, actuation and supervision, on a ManualClock with a memory queue."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from pydantic import BaseModel
from structlog.testing import capture_logs

from autoscaler.cli import main
from autoscaler.config.models import Config, parse_config
from autoscaler.config.params import PolicyParams
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.model import GroupState, Observation, Recommendation
from autoscaler.core.policy import PolicyContext
from autoscaler.ports.clock import Clock, ManualClock
from autoscaler.ports.errors import Denied, Transient
from autoscaler.ports.provider import GroupId
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon, run_daemon
from autoscaler.runtime.loop import TickGrid
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.supervisor import Supervisor
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeClient, FakeProvider

CONFIG = """
controller: {{interval: 1s, drain_timeout: 2s}}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 5, boot_time: 60s}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: {provider}}}
"""


def config(registries: dict[str, Registry[Any]], queue: str, provider: str = "local") -> Config:
    return parse_config(CONFIG.format(queue=queue, provider=provider), registries=registries)


CHAT = GroupId("chat", "local")


async def group_state(daemon: Daemon, account: str = "local") -> GroupState:
    state = (await daemon.accounts[account].client.describe([CHAT]))[CHAT]
    assert isinstance(state, GroupState)
    return state


async def test_tick_scales_out_on_backlog_and_logs_the_decision(
    registries: dict[str, Registry[Any]],
) -> None:
    clock = ManualClock()
    queue = reset_queue("d-out")
    for _ in range(3):
        queue.put(clock.wall(), 1.0)
    clock.advance(1.5)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config(registries, "d-out"), registries=registries, clock=clock,
                          telemetry=telemetry)
    await daemon.start()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
    assert tick.decision is not None and tick.changed and tick.acted
    assert (tick.decision.current, tick.decision.desired) == (0, 3)
    [event] = [e for e in logs if e["event"] == "decision"]
    assert event["pool"] == "chat" and event["current"] == 0 and event["desired"] == 3
    assert event["targets"] == {"local": 3} and event["direction"] == "up"
    assert "per instance" in event["reason"] and event["terms"]["metric"] == 3
    assert event["oldest_wait_s"] == pytest.approx(1.5)
    await daemon.loop.settle()  # the tick only handed the target to the group's actuator
    state = await group_state(daemon)
    assert (state.desired, state.booting) == (3, 3)  # boot_time 60 s on a clock that stands
    assert telemetry.registry.get_sample_value(
        "autoscaler_scale_actions_total", {"pool": "chat", "direction": "up"}) == 1

    with capture_logs() as logs:  # nothing changes: no decision event, no action
        [tick] = await daemon.loop.tick()
    assert not tick.changed and not [e for e in logs if e["event"] == "decision"]
    await daemon.close(1.0)


async def test_dry_run_decides_but_never_resizes(registries: dict[str, Registry[Any]]) -> None:
    clock = ManualClock()
    queue = reset_queue("d-dry")
    queue.put(clock.wall(), 1.0)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config(registries, "d-dry"), registries=registries, clock=clock,
                          dry_run=True, telemetry=telemetry)
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
    assert tick.changed and not tick.acted and tick.decision is not None
    assert tick.decision.desired == 1
    assert [e["dry_run"] for e in logs if e["event"] == "decision"] == [True]
    await daemon.loop.settle()
    assert (await group_state(daemon)).desired == 0 and not daemon.loop.actuators
    assert telemetry.registry.get_sample_value(
        "autoscaler_desired_instances", {"pool": "chat"}) == 1
    assert telemetry.registry.get_sample_value(
        "autoscaler_scale_actions_total", {"pool": "chat", "direction": "up"}) is None
    await daemon.close(1.0)


def one_waiting(
    registries: dict[str, Registry[Any]], queue: str
) -> tuple[Daemon, PrometheusTelemetry, FakeClient]:
    """A daemon whose one group is on a ``fake`` account, with one request waiting."""
    registries["providers"].register("fake", FakeProvider)
    clock = ManualClock()
    reset_queue(queue).put(clock.wall(), 1.0)
    telemetry = PrometheusTelemetry()
    text = CONFIG.format(queue=queue, provider="cloud").replace(
        "pools:", "providers: {cloud: {kind: fake}}\npools:")
    daemon = Daemon.build(parse_config(text, registries=registries), registries=registries,
                          clock=clock, telemetry=telemetry)
    return daemon, telemetry, FakeProvider.clients["cloud"]


async def test_a_refused_resize_is_a_provider_error_not_a_scale_action(
    registries: dict[str, Registry[Any]],
) -> None:
    daemon, telemetry, cloud = one_waiting(registries, "d-refused")
    cloud.fail("resize", Denied("quota exceeded"))
    await daemon.start()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
        assert tick.changed and tick.acted and tick.submitted == ("local",)
        [outcome] = await daemon.loop.settle(first_outcome=True)
    assert isinstance(outcome.error, Denied)
    assert telemetry.registry.get_sample_value(
        "autoscaler_scale_actions_total", {"pool": "chat", "direction": "up"}) is None
    assert telemetry.registry.get_sample_value(
        "autoscaler_provider_errors_total",
        {"pool": "chat", "group": "local", "operation": "resize", "error": "denied"}) == 1
    [event] = [e for e in logs if e["event"] == "resize_refused"]
    assert event["error_class"] == "denied" and event["account"] == "cloud"
    await daemon.close(1.0)


async def test_provider_error_skips_actuation_for_that_pool(
    registries: dict[str, Registry[Any]],
) -> None:
    daemon, telemetry, cloud = one_waiting(registries, "d-flaky")
    cloud.fail("describe", Transient("503 from the API", account="cloud", operation="describe"))
    await daemon.start()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
    assert tick.decision is None and not tick.acted and not daemon.loop.actuators
    [event] = [e for e in logs if e["event"] == "provider_error"]
    assert (event["pool"], event["group"], event["operation"]) == ("chat", "local", "describe")
    assert event["error_class"] == "transient"
    assert telemetry.registry.get_sample_value(
        "autoscaler_provider_errors_total",
        {"pool": "chat", "group": "local", "operation": "describe", "error": "transient"}) == 1
    assert tick.as_json()["reason"] == "skipped: account 'cloud' describe: 503 from the API"
    assert [c.operation for c in cloud.calls] == ["start", "describe"]
    await daemon.close(1.0)


def test_grid_keeps_slots_and_skips_missed_ones() -> None:
    grid = TickGrid(start=100.0, interval=2.0)
    assert grid.advance(100.3) == (102.0, 0)  # on time: next slot
    assert grid.advance(102.1) == (104.0, 0)
    assert grid.advance(109.0) == (110.0, 2)  # overran 106 and 108... and 104
    assert grid.k == 5 and grid.skipped_total == 2


class SlowSettings(BaseModel):
    pass


class SlowSampler:
    """Each sample costs 2.5 intervals of clock time; the second sets ``stop``."""

    def __init__(self, clock: ManualClock, stop: asyncio.Event) -> None:
        self.clock, self.stop, self.calls = clock, stop, 0

    async def sample(self) -> Mapping[str, Observation]:
        self.calls += 1
        self.clock.advance(0.25)
        if self.calls == 2:
            self.stop.set()
        return {"chat": Observation(time=self.clock.monotonic(), depth=0, oldest_wait_s=0.0)}

    async def close(self) -> None:
        return None


async def test_overrun_logs_tick_overrun(registries: dict[str, Registry[Any]]) -> None:
    clock = ManualClock()
    stop = asyncio.Event()
    sampler = SlowSampler(clock, stop)

    class SlowSource:
        kind: ClassVar[str] = "slow"
        Settings: ClassVar[type[BaseModel]] = SlowSettings

        @classmethod
        def sampler_key(cls, settings: BaseModel) -> Hashable:
            return "slow"

        @classmethod
        def make_sampler(cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock,
                         timeout_s: float) -> SlowSampler:
            return sampler

    registries["sources"].register("slow", SlowSource)
    text = CONFIG.format(queue="x", provider="local").replace("interval: 1s", "interval: 100ms")
    text = text.replace("{kind: memory, name: x}", "{kind: slow}").replace(
        "provider: local", 'provider: local, command: ["true"]')
    daemon = Daemon.build(parse_config(text, registries=registries), registries=registries,
                          clock=clock)
    with capture_logs() as logs:
        await asyncio.wait_for(daemon.loop.run(stop), 10)
    overruns = [e for e in logs if e["event"] == "tick_overrun"]
    assert [e["skipped_slots"] for e in overruns] == [2, 2]
    assert sampler.calls == 2


async def test_run_once_prints_one_json_line_per_pool(
    registries: dict[str, Registry[Any]],
) -> None:
    reset_queue("d-once").put(time.time() - 5.0, 1.0)  # a plausible producer time
    out = io.StringIO()
    code = await run_daemon(config(registries, "d-once"), registries=registries, once=True,
                            dry_run=True, out=out)
    assert code == 0
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["pool"] == "chat" and record["depth"] == 1 and record["desired"] == 1
    assert record["current"] == 0 and record["oldest_wait_s"] > 0
    assert record["targets"] == {"local": 1} and not record["acted"]
    assert "reason" in record and "terms" in record


async def test_supervisor_stops_on_a_failed_root_task() -> None:
    sup = Supervisor()

    async def broken() -> None:
        raise RuntimeError("bug")

    with capture_logs() as logs:
        sup.spawn("broken", broken())
        await asyncio.wait_for(sup.stop.wait(), 5)
        await sup.drain(1.0)
    assert sup.failure is not None and "bug" in sup.failure
    assert [e["task"] for e in logs if e["event"] == "root_task_failed"] == ["broken"]


async def test_signal_sets_the_flag_then_a_second_cancels() -> None:
    sup = Supervisor()
    never = asyncio.Event()
    task = sup.spawn("sleeper", never.wait())
    sup.on_signal(signal.SIGTERM)
    assert sup.stop.is_set() and not task.done()
    sup.on_signal(signal.SIGINT)
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled() and sup.failure is None


def test_config_error_exits_2_with_file_and_line(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n  - name: a\n    queue: {kind: memory}\n    sla: {max_wait: 2s}\n"
                   "    capacity: {max: 0}\n    groups: [{name: g, provider: local}]\n")
    result = CliRunner().invoke(main, ["run", "-c", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:5: pools[0].capacity.max" in result.output
    assert "Traceback" not in result.output


def test_local_group_without_command_on_redis_is_refused_at_load(
    registries: dict[str, Registry[Any]],
) -> None:
    text = CONFIG.format(queue="x", provider="local").replace(
        "{kind: memory, name: x}", '{kind: redis-list, url: "redis://127.0.0.1:1/0", key: q}')
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, registries=registries)
    [message] = info.value.messages
    assert message.startswith("<string>:10: pools[0].groups[0].command: ")
    assert "needs a `command` unless the pool's queue kind is memory" in message


async def test_metrics_port_in_use_exits_1_naming_the_setting(
    registries: dict[str, Registry[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = CONFIG.format(queue="d-port", provider="local").replace(
            "drain_timeout: 2s", f'drain_timeout: 2s, metrics_address: "127.0.0.1:{port}"')
        code = await run_daemon(parse_config(text, registries=registries),
                                registries=registries, install_signals=False)
    assert code == 1
    err = capsys.readouterr().err
    assert f"controller.metrics_address 127.0.0.1:{port}: cannot listen" in err
    assert "Traceback" not in err


class BrokenPolicy:
    """A policy plugin with a bug: it raises on every tick."""

    kind: ClassVar[str] = "broken"
    Params: ClassVar[type[BaseModel]] = PolicyParams

    def __init__(self, params: PolicyParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        raise ZeroDivisionError("plugin bug")


async def test_a_failing_policy_skips_its_pool_and_the_others_still_scale(
    registries: dict[str, Registry[Any]],
) -> None:
    registries["policies"].register("broken", BrokenPolicy)
    clock = ManualClock()
    reset_queue("d-broken").put(clock.wall(), 1.0)
    reset_queue("d-fine").put(clock.wall(), 1.0)
    text = CONFIG.format(queue="d-fine", provider="local") + """
  - name: other
    queue: {kind: memory, name: d-broken}
    sla: {max_wait: 2s}
    capacity: {min: 0, max: 5}
    policy: {kind: broken}
    groups:
      - {name: local, provider: local}
"""
    daemon = Daemon.build(parse_config(text, registries=registries), registries=registries,
                          clock=clock)
    with capture_logs() as logs:
        fine, broken = await daemon.loop.tick()
    assert fine.acted and fine.decision is not None and fine.decision.desired == 1
    assert broken.decision is None and not broken.acted
    assert "ZeroDivisionError" in broken.as_json()["reason"]
    [event] = [e for e in logs if e["event"] == "decision_failed"]
    assert event["pool"] == "other" and "plugin bug" in event["error"]
    await daemon.close(1.0)


async def test_drain_is_bounded_even_for_a_task_that_ignores_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from autoscaler.runtime import supervisor

    monkeypatch.setattr(supervisor, "CANCEL_GRACE_S", 0.2)
    sup = Supervisor()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # swallows every cancellation until released

    task = sup.spawn("stubborn", stubborn())
    with capture_logs() as logs:
        await asyncio.wait_for(sup.drain(0.1), 5)  # returns: the drain has its own deadline
    assert [e["task"] for e in logs if e["event"] == "root_task_stuck"] == ["stubborn"]
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()
