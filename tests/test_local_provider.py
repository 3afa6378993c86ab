"""The ``local`` provider with real OS processes and with in-process workers.

Boot time runs on a ManualClock; processes are real, so waits for a process to start or exit poll
with a generous deadline (never asserting how long anything took).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import PoolConfig, parse_config
from autoscaler.config.providers import managed_group
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.errors import CapacityUnavailable
from autoscaler.providers.local.client import (
    CRASH_BACKOFF_BASE_S,
    CRASH_GRACE_S,
    CRASH_LIMIT,
    LAUNCH_RETRY_S,
    LocalGroup,
)
from autoscaler.registry import Registry
from autoscaler.sources.memory import reset_queue

WORKER = r"""
import os, pathlib, signal, sys, time
d, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
me, parent = os.environ["AUTOSCALER_INSTANCE"], os.getppid()
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else on_term)
(d / f"started-{me}").touch()  # only once SIGTERM is handled
if mode == "crash":
    sys.exit(3)
while not stop:
    if os.getppid() != parent:  # the test process died: never outlive it
        sys.exit(4)
    time.sleep(0.02)
while mode == "hold" and not (d / "release").exists():  # finishing an in-flight request
    time.sleep(0.02)
(d / f"stopped-{me}").touch()
"""


def pool_config(registries: dict[str, Registry[Any]], group: str, queue: str = "memory",
                boot: float = 5.0, slots: int = 1) -> PoolConfig:
    text = f"""
pools:
  - name: p
    queue: {{kind: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 10, boot_time: {boot}, slots_per_instance: {slots}}}
    groups: [{group}]
"""
    return parse_config(text, registries=registries).pools[0]


OPEN: list[LocalGroup] = []


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    """Close every provider a test made, even when it failed half-way: no orphan workers."""
    yield
    while OPEN:
        await OPEN.pop().close(1.0)


def make(pool: PoolConfig, clock: ManualClock) -> LocalGroup:
    provider = LocalGroup(managed_group(pool, pool.groups[0]), clock)
    OPEN.append(provider)
    return provider


def process_provider(registries: dict[str, Registry[Any]], tmp_path: Path, mode: str,
                     clock: ManualClock) -> LocalGroup:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, str(script), str(tmp_path), mode]
    group = "{name: g, provider: local, command: " + repr(command).replace("'", '"') + "}"
    pool = pool_config(registries, group)
    return make(pool, clock)


async def until(predicate: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():
        if loop.time() > end:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def files(tmp_path: Path, prefix: str) -> set[str]:
    return {p.name.removeprefix(prefix) for p in tmp_path.glob(prefix + "*")}


async def test_booting_until_boot_time_on_the_clock(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    clock = ManualClock()
    provider = process_provider(registries, tmp_path, "serve", clock)
    await provider.resize(2)
    state = provider.state()
    assert (state.desired, state.booting, state.running) == (2, 2, 0)
    clock.advance(5.0)
    state = provider.state()
    assert (state.desired, state.booting, state.running) == (2, 0, 2)
    await until(lambda: files(tmp_path, "started-") == {"1", "2"}, "two workers")
    await provider.close(10.0)
    assert files(tmp_path, "stopped-") == {"1", "2"}
    assert provider.state().running == 0


async def test_scale_in_stops_booting_first_then_newest(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    clock = ManualClock()
    provider = process_provider(registries, tmp_path, "serve", clock)
    await provider.resize(2)  # instances 1, 2
    clock.advance(5.0)
    await provider.resize(3)  # instance 3 boots
    await until(lambda: files(tmp_path, "started-") == {"1", "2", "3"}, "three workers")
    await provider.resize(2)
    await until(lambda: files(tmp_path, "stopped-") == {"3"}, "the booting one to stop")
    await provider.resize(1)
    await until(lambda: files(tmp_path, "stopped-") == {"2", "3"}, "the newest to stop")
    state = provider.state()
    assert (state.desired, state.booting) == (1, 0)
    await provider.close(10.0)


async def test_draining_instance_is_reported_draining_until_it_exits(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    clock = ManualClock()
    provider = process_provider(registries, tmp_path, "hold", clock)
    await provider.resize(1)
    clock.advance(5.0)
    await until(lambda: files(tmp_path, "started-") == {"1"}, "the worker")
    await provider.resize(0)
    state = provider.state()
    assert (state.desired, state.running, state.draining, state.current) == (0, 0, 1, 0)
    (tmp_path / "release").touch()
    await until(lambda: files(tmp_path, "stopped-") == {"1"}, "the drained worker")
    await provider.close(10.0)
    assert provider.state().running == 0


async def test_unexpected_exit_is_logged_and_replaced(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    clock = ManualClock()
    provider = process_provider(registries, tmp_path, "crash", clock)
    with capture_logs() as logs:
        await provider.resize(1)
        await until(lambda: any(e["event"] == "instance_exited" for e in logs), "the crash")
    exited = next(e for e in logs if e["event"] == "instance_exited")
    assert exited["returncode"] == 3 and exited["group"] == "g"
    assert provider.state().desired == 0  # so the next tick asks for it again
    clock.advance(2 * CRASH_BACKOFF_BASE_S)  # past the first crash-loop backoff (jittered)
    await provider.resize(1)
    await until(lambda: files(tmp_path, "started-") == {"1", "2"}, "the replacement")
    await provider.close(5.0)


async def test_close_kills_after_the_drain_deadline(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    clock = ManualClock()
    provider = process_provider(registries, tmp_path, "stubborn", clock)
    await provider.resize(1)
    await until(lambda: files(tmp_path, "started-") == {"1"}, "the worker")
    with capture_logs() as logs:
        await provider.close(0.2)
    stopped = [e for e in logs if e["event"] == "instance_stopped"]
    assert [e["returncode"] for e in stopped] == [-9]
    assert any(e["event"] == "instance_killed" for e in logs)


async def test_missing_binary_is_capacity_unavailable_with_a_reason(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    pool = pool_config(registries, '{name: g, provider: local, command: ["/nonexistent/worker"]}')
    clock = ManualClock()
    provider = make(pool, clock)
    with pytest.raises(CapacityUnavailable) as info:
        await provider.resize(1)
    assert info.value.group == "p/g" and info.value.operation == "resize"
    assert info.value.account == "local"
    state = provider.state()
    assert not state.available and "cannot start '/nonexistent/worker'" in state.reason
    # After the back-off the group is offered launches again; it fails again, and says so.
    clock.advance(LAUNCH_RETRY_S)
    assert provider.state().available
    with pytest.raises(CapacityUnavailable):
        await provider.resize(1)
    assert not provider.state().available


def test_command_required_unless_memory_queue(registries: dict[str, Registry[Any]]) -> None:
    class OtherSource:
        from autoscaler.sources.memory import MemorySettings as Settings

        kind = "other"

    registries["sources"].register("other", OtherSource)
    with pytest.raises(ConfigFileError, match="needs a `command` unless the pool's queue kind"):
        pool_config(registries, "{name: g, provider: local}", queue="other")


async def test_in_process_workers_serve_and_drain_without_loss(
    registries: dict[str, Registry[Any]],
) -> None:
    clock = ManualClock()
    queue = reset_queue("default")
    pool = pool_config(registries, "{name: g, provider: local}", boot=0.0, slots=2)
    provider = make(pool, clock)
    await provider.resize(2)
    for _ in range(20):
        queue.put(clock.wall(), 0.001)
    await until(lambda: queue.completed_total == 20, "20 completions")

    queue.put(clock.wall(), 0.3)  # one long request in flight during scale-in
    await until(lambda: queue.in_flight == 1, "the long request to start")
    await provider.resize(0)
    state = provider.state()
    assert (state.desired, state.running) == (0, 0) and state.draining >= 1  # busy: drains
    await until(lambda: queue.completed_total == 21, "the in-flight request")
    await until(lambda: provider._instances == {}, "workers to exit")
    assert len(queue) == 0 and queue.in_flight == 0
    assert sorted(queue.completed_ids) == list(range(1, 22))
    await provider.close(1.0)


async def test_in_process_instance_waits_for_boot(registries: dict[str, Registry[Any]]) -> None:
    clock = ManualClock()
    queue = reset_queue("default")
    pool = pool_config(registries, "{name: g, provider: local}", boot=30.0)
    provider = make(pool, clock)
    await provider.resize(1)
    queue.put(clock.wall(), 0.0)
    await asyncio.sleep(0.05)
    assert queue.completed_total == 0 and provider.state().booting == 1
    await provider.resize(0)  # a booting task is cancelled at once
    await until(lambda: provider._instances == {}, "the booting worker to go")
    assert len(queue) == 1  # nothing was taken
    await provider.close(1.0)


FLAKY = r"""
import pathlib, signal, sys, time
d = pathlib.Path(sys.argv[1])
if (d / "broken").exists():  # a wrong-type key, a missing model: exits at once
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.02)
"""


async def test_crash_loop_backs_off_then_reports_the_group_unavailable(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    """Real processes that exit at once: a resize during the backoff launches nothing; after
    CRASH_LIMIT fast failures the group is unavailable with the reason, and a resize is
    refused as CapacityUnavailable (what moves the loop's capacity to the next group); once
    the cause is fixed, an instance that outlives the grace ends the crash loop."""
    clock = ManualClock()
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    (tmp_path / "broken").touch()
    command = repr([sys.executable, str(script), str(tmp_path)]).replace("'", '"')
    provider = make(pool_config(registries, "{name: g, provider: local, command: "
                                + command + "}"), clock)
    started: list[int] = []
    with capture_logs() as logs:
        for n in range(1, CRASH_LIMIT + 1):
            await provider.resize(1)
            await until(lambda: provider.fast_failures == len(started) + 1, "a fast failure")
            started.append(provider.fast_failures_total)
            if n < CRASH_LIMIT:
                for _ in range(5):  # every tick asks again: inside the backoff, no launch
                    await provider.resize(1)
                    assert provider.state().desired == 0
                clock.advance(CRASH_BACKOFF_BASE_S * 2 ** n)  # past this backoff's jitter
    assert started == list(range(1, CRASH_LIMIT + 1))  # one launch per backoff, no more
    delayed = [e for e in logs if e["event"] == "instance_restart_delayed"]
    assert len(delayed) == CRASH_LIMIT - 1  # logged once per backoff, not once per tick
    crashes = [e for e in logs if e["event"] == "instance_crash_loop"]
    assert [e["fast_failures_total"] for e in crashes] == list(range(1, CRASH_LIMIT + 1))
    assert all(e["backoff_s"] > 0 for e in crashes)
    [looping] = [e for e in logs if e["event"] == "group_crash_looping"]
    assert looping["fast_failures"] == CRASH_LIMIT
    state = provider.state()
    assert not state.available and "crash loop" in state.reason and "returncode 3" in state.reason
    with pytest.raises(CapacityUnavailable, match="crash loop"):
        await provider.resize(1)
    assert provider.fast_failures_total == CRASH_LIMIT  # the refused resize launched nothing

    (tmp_path / "broken").unlink()  # the operator fixes the key
    clock.advance(LAUNCH_RETRY_S)
    assert provider.state().available  # one more launch is allowed
    await provider.resize(1)
    clock.advance(CRASH_GRACE_S)
    state = provider.state()
    assert state.available and state.running == 1 and provider.fast_failures == 0
    await provider.close(5.0)
    assert provider.fast_failures_total == CRASH_LIMIT  # a stop asked for is not a failure


ENV_PROBE = r"""
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
out = pathlib.Path(sys.argv[1]) / f"env-{os.environ['AUTOSCALER_INSTANCE']}"
out.write_text(os.environ.get("AUTOSCALER_QUEUE_URL", "<unset>"))
time.sleep(3600)
"""


@pytest.mark.parametrize(("queue", "expected"), [
    ('{kind: redis-list, url: "redis://:pw@127.0.0.1:6399/2", key: k}',
     "redis://:pw@127.0.0.1:6399/2"),
    ('{kind: rabbitmq, url: "amqp://u:pw@127.0.0.1:5699/v", queue: q, '
     'management_url: "http://u:pw@127.0.0.1:15699"}', "amqp://u:pw@127.0.0.1:5699/v"),
    ('{kind: prometheus, url: "http://u:pw@127.0.0.1:9099", depth: "queue_depth"}', "<unset>"),
])
async def test_workers_get_only_a_queue_url_they_consume(
    registries: dict[str, Registry[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    queue: str, expected: str,
) -> None:
    """``AUTOSCALER_QUEUE_URL`` is the URL a worker consumes the queue at; a Prometheus pool's
    URL is a metrics server (and may carry its password): workers never get it."""
    monkeypatch.delenv("AUTOSCALER_QUEUE_URL", raising=False)
    script = tmp_path / "env.py"
    script.write_text(ENV_PROBE)
    command = [sys.executable, str(script), str(tmp_path)]
    group = "{name: g, provider: local, command: " + repr(command).replace("'", '"') + "}"
    pool = parse_config(f"""
pools:
  - name: p
    queue: {queue}
    sla: {{max_wait: 2s}}
    capacity: {{max: 1, boot_time: 0s}}
    groups: [{group}]
""", registries=registries).pools[0]
    provider = make(pool, ManualClock())
    await provider.resize(1)
    await until(lambda: bool(files(tmp_path, "env-")), "the worker's environment")
    [written] = tmp_path.glob("env-*")
    await until(lambda: written.read_text() != "", "the worker's environment")
    assert written.read_text() == expected
