"""``autoscaler pause`` / ``resume`` against a real daemon process on a real redis-server: a
paused pool is sampled and decided, never resized; the pause is in the store, so a daemon
started later sees it too."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.testing import free_port

CONFIG = """
controller:
  interval: 100ms
  metrics_address: "127.0.0.1:{port}"
  drain_timeout: 5s
  state_store: {{url: "{url}", prefix: "pt:"}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: pause-q}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 4, boot_time: 0s}}
    groups: [{{name: local, provider: local, command: [sleep, "600"]}}]
"""


def metrics(port: int) -> dict[str, float]:
    """Samples by name (the pool label is the only one in these metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {s.name: float(s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.labels.get("pool", "chat") == "chat"}


def until(check: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", *args], capture_output=True,
                          text=True, timeout=60)


def test_a_paused_pool_is_decided_but_not_resized(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    path = tmp_path / "policy.yaml"
    path.write_text(CONFIG.format(port=port, url=redis_url))
    proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_url)
    try:
        until(lambda: metrics(port).get("autoscaler_running_instances") == 1, "min running",
              proc)
        assert metrics(port).get("autoscaler_pool_paused") == 0

        paused = cli("pause", "chat", "-c", str(path), "--reason", "maintenance")
        assert paused.returncode == 0, paused.stderr
        assert "pool chat paused" in paused.stderr
        until(lambda: metrics(port).get("autoscaler_pool_paused") == 1, "paused gauge", proc)

        now = time.time()
        client.lpush("pause-q", *[json.dumps({"id": i, "enqueued_at": now}) for i in range(4)])
        until(lambda: metrics(port).get("autoscaler_desired_instances") == 4, "decision", proc)
        ticks = metrics(port)["autoscaler_tick_duration_seconds_count"]
        until(lambda: metrics(port)["autoscaler_tick_duration_seconds_count"] >= ticks + 10,
              "ten more ticks", proc)
        assert metrics(port)["autoscaler_running_instances"] == 1  # decided 4, resized nothing

        listed = cli("pause", "-c", str(path))
        assert listed.returncode == 0
        [row] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row["pool"] == "chat" and row["reason"] == "maintenance"

        resumed = cli("resume", "chat", "-c", str(path))
        assert resumed.returncode == 0 and "pool chat resumed" in resumed.stderr
        until(lambda: metrics(port).get("autoscaler_running_instances") == 4, "resized", proc)
        assert metrics(port)["autoscaler_pool_paused"] == 0
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    [paused_event] = [e for e in events if e["event"] == "pool_paused"]
    assert paused_event["pool"] == "chat" and paused_event["reason"] == "maintenance"
    assert [e["pool"] for e in events if e["event"] == "pool_resumed"] == ["chat"]


def test_pause_errors(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(CONFIG.format(port=free_port(), url=redis_url))
    unknown = cli("pause", "nope", "-c", str(path))
    assert unknown.returncode == 2 and "no pool named 'nope' (pools: chat)" in unknown.stderr
    again = cli("resume", "chat", "-c", str(path))
    assert again.returncode == 0 and "was not paused" in again.stderr
    down = tmp_path / "down.yaml"
    down.write_text(CONFIG.format(port=free_port(), url=f"redis://:pw@127.0.0.1:{free_port()}"))
    failed = cli("pause", "chat", "-c", str(down))
    assert failed.returncode == 1 and "pause write failed" in failed.stderr
    assert ":pw@" not in failed.stderr
    memory = tmp_path / "memory.yaml"
    memory.write_text(CONFIG.format(port=free_port(), url=redis_url).replace(
        f'state_store: {{url: "{redis_url}", prefix: "pt:"}}', "state_store: none"))
    nowhere = cli("pause", "chat", "-c", str(memory))
    assert nowhere.returncode == 2 and "needs a Redis server" in nowhere.stderr


async def test_a_daemon_started_later_sees_the_pause(redis_url: str, registries: Any) -> None:
    """The pause outlives the daemon: a new one (a restart, another replica) reads it before
    its first actuation."""
    from autoscaler.config.models import parse_config
    from autoscaler.ports.clock import ManualClock
    from autoscaler.runtime.app import Daemon
    from autoscaler.runtime.metrics import PrometheusTelemetry
    from autoscaler.runtime.pause import PauseStore
    from autoscaler.sources.memory import reset_queue
    from tests.test_daemon_state import CloudGroup

    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    queue = reset_queue("pause-later")
    clock = ManualClock()
    for _ in range(6):
        queue.put(clock.wall(), 1.0)
    config = parse_config(f"""
controller: {{interval: 1s, state_store: {{url: "{redis_url}"}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: pause-later}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 8}}
    groups: [{{name: g, provider: cloud}}]
""", registries=registries)
    store = PauseStore(redis_url, prefix="autoscaler:state:", timeout_s=1.0)
    assert await store.pause("chat", since=clock.wall(), reason="test")
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, clock=clock, telemetry=telemetry)
    await daemon.start()
    [tick] = await daemon.loop.tick()
    assert tick.decision is not None and tick.decision.desired == 5 and not tick.acted
    assert telemetry.registry.get_sample_value("autoscaler_pool_paused", {"pool": "chat"}) == 1
    assert await store.resume("chat")
    clock.advance(1.0)
    [tick] = await daemon.loop.tick()
    assert tick.acted
    await daemon.loop.settle()
    assert CloudGroup.sizes["g"] == 5
    await store.close()
    await daemon.close(1.0)


async def test_a_resize_queued_before_the_pause_is_dropped(
    redis_url: str, registries: Any
) -> None:
    """A provider refusing every resize keeps the group's actuator retrying; once the pool is
    paused its queued retry is dropped at the gate instead of being sent."""
    import asyncio

    from structlog.testing import capture_logs

    from autoscaler.config.models import parse_config
    from autoscaler.ports.clock import ManualClock
    from autoscaler.runtime.actuator import RetryPolicy
    from autoscaler.runtime.app import Daemon
    from autoscaler.runtime.pause import PauseStore
    from autoscaler.sources.memory import reset_queue
    from autoscaler.testing.fakes import FakeProvider

    registries["providers"].register("fake", FakeProvider)
    queue = reset_queue("pause-drop")
    clock = ManualClock()
    for _ in range(6):
        queue.put(clock.wall(), 1.0)
    config = parse_config(f"""
controller: {{interval: 1s, state_store: {{url: "{redis_url}"}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: pause-drop}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 8}}
    groups: [{{name: g, provider: fake, refuse: transient}}]
""", registries=registries)
    daemon = Daemon.build(config, registries=registries, clock=clock)
    daemon.loop.retry = RetryPolicy(base_s=0.02, cap_s=0.02)
    await daemon.start()
    [tick] = await daemon.loop.tick()
    assert tick.acted
    calls = FakeProvider.clients["fake"].calls
    for _ in range(200):  # the actuator keeps trying the refused resize
        if sum(c.operation == "resize" for c in calls) >= 2:
            break
        clock.advance(0.05)  # retries wait on the loop clock
        await asyncio.sleep(0.01)
    store = PauseStore(redis_url, prefix="autoscaler:state:", timeout_s=1.0)
    await store.pause("chat", since=clock.wall(), reason="test")
    assert daemon.extensions is not None and daemon.extensions.pause is not None
    with capture_logs() as logs:
        await daemon.extensions.pause.refresh()
        sent = sum(c.operation == "resize" for c in calls)
        for _ in range(200):
            if any(e["event"] == "resize_dropped" for e in logs):
                break
            clock.advance(0.05)
            await asyncio.sleep(0.01)
    [dropped] = [e for e in logs if e["event"] == "resize_dropped"]
    assert dropped["reason"] == "paused"
    for _ in range(5):  # five retry periods: nothing more is sent
        clock.advance(0.05)
        await asyncio.sleep(0.01)
    assert sum(c.operation == "resize" for c in calls) <= sent + 1  # one may have been in flight
    await store.resume("chat")
    await store.close()
    await daemon.close(1.0)


async def test_an_unreachable_store_neither_pauses_nor_resumes(registries: Any) -> None:
    """The store is down from the start: ticks still decide and act (nothing is known to be
    paused), and the failure is one log line for the whole outage, not one per tick."""
    from structlog.testing import capture_logs

    from autoscaler.config.models import parse_config
    from autoscaler.ports.clock import ManualClock
    from autoscaler.runtime.app import Daemon
    from autoscaler.sources.memory import reset_queue
    from tests.test_daemon_state import CloudGroup

    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    queue = reset_queue("pause-down")
    clock = ManualClock()
    for _ in range(3):
        queue.put(clock.wall(), 1.0)
    config = parse_config(f"""
controller: {{interval: 1s, state_store: {{url: "redis://127.0.0.1:{free_port()}/0"}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: pause-down}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 8}}
    budget: {{monthly_usd: 100}}
    groups: [{{name: g, provider: cloud, hourly_price: 1.0}}]
""", registries=registries)
    daemon = Daemon.build(config, registries=registries, clock=clock)
    await daemon.start()
    with capture_logs() as logs:
        for _ in range(4):
            [tick] = await daemon.loop.tick()
            assert tick.decision is not None
            await daemon.loop.settle()
            clock.advance(1.0)
    assert CloudGroup.sizes["g"] == 3
    assert [e["event"] for e in logs].count("pause_read_failed") == 1
    assert [e["event"] for e in logs].count("budget_load_failed") >= 1
    assert daemon.extensions is not None and daemon.extensions.budget is not None
    assert daemon.extensions.budget.ledgers["pool:chat"].spent_usd > 0  # accrued in memory
    await daemon.close(1.0)


def test_a_dropped_resize_names_its_own_pools_reason() -> None:
    """``resize_dropped`` says ``paused`` only for a paused pool's resize; another pool's
    gate reason (here: none, the gate is open for it) is its own."""
    from autoscaler.runtime.gate import DryRunGate, OpenGate, why_closed
    from autoscaler.runtime.pause import PauseGate

    gate = PauseGate(OpenGate())
    gate.paused = frozenset({"a"})
    assert why_closed(gate, "a") == "paused"
    assert why_closed(gate, "b") == ""
    dry = PauseGate(DryRunGate())
    dry.paused = frozenset({"a"})
    assert why_closed(dry, "b") == DryRunGate().why_closed != ""
