"""Chaos with real parts: Redis killed and restarted under a running ``autoscaler run``, and
the daemon's wall clock stepping an hour back and forth (injected through the clock port, as
the LoopClock reads it; the system clock is left alone).

Assertions are on observed states, sampled over HTTP; deadlines only bound a broken build."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.config.models import parse_config
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue
from autoscaler.testing import free_port
from autoscaler.testing.fakes import FakeProvider

REDIS = shutil.which("redis-server")


@contextmanager
def restartable_redis(port: int, workdir: Path, *,
                      persistent: bool = False) -> Iterator[Callable[[], None]]:
    """A redis-server on ``port``; yields ``start`` (SIGKILL it yourself through ``procs``).
    ``persistent``: an append-only file fsynced on every write, so a SIGKILLed server restarts
    with every write it acknowledged (otherwise it restarts empty)."""
    procs: list[subprocess.Popen[bytes]] = []
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
        "--appendonly", "no"]

    def start() -> None:
        assert REDIS is not None
        proc = subprocess.Popen(
            [REDIS, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             *aof, "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    start.procs = procs  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def samples(port: int) -> dict[str, float] | None:
    """``pool="chat"`` and unlabelled samples (scale actions keyed by direction)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "autoscaler_scale_actions_total":
                out[f"{s.name}:{s.labels['direction']}"] = float(s.value)
            elif s.labels.get("pool", "chat") == "chat":
                out[s.name] = float(s.value)
    return out


REDIS_CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 5s,
             state_store: none}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "q:chat"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 3, boot_time: 0s}}
    behavior: {{scale_down: {{stabilization_window: 0s}}}}
    groups:
      - name: local
        provider: local
        command: ["{python}", "-c", "import time; time.sleep(3600)"]
"""


@pytest.mark.skipif(REDIS is None, reason="needs redis-server")
def test_redis_killed_and_restarted_under_a_running_daemon(tmp_path: Path) -> None:
    redis_port, port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    config = tmp_path / "c.yaml"
    config.write_text(REDIS_CONFIG.format(port=port, url=url, python=sys.executable))
    log = tmp_path / "daemon.log"
    with restartable_redis(redis_port, tmp_path) as start_redis:
        start_redis()
        client = redis.Redis.from_url(url)
        client.lpush("q:chat", *[json.dumps({"enqueued_at": time.time()})] * 10)
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while (samples(port) or {}).get("autoscaler_running_instances") != 3:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.05)
            start_redis.procs[-1].kill()  # type: ignore[attr-defined]
            start_redis.procs[-1].wait()  # type: ignore[attr-defined]
            blind_until = time.monotonic() + 2.0
            stale_seen = False
            while time.monotonic() < blind_until:  # blind: nothing may be scaled in
                m = samples(port)
                assert m is not None and proc.poll() is None
                assert m["autoscaler_running_instances"] == 3, "scaled in while blind"
                assert m.get("autoscaler_scale_actions_total:down", 0) == 0
                stale_seen = stale_seen or m.get("autoscaler_observation_stale") == 1
                time.sleep(0.05)
            assert stale_seen, "the failed samples were never marked stale"
            start_redis()  # empty again (no persistence): the backlog is gone
            back = time.monotonic()
            deadline = back + 30
            while True:  # decisions resume: fresh samples of an empty queue, down to min
                m = samples(port) or {}
                if (m.get("autoscaler_observation_stale") == 0
                        and m.get("autoscaler_running_instances") == 1):
                    break
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.05)
            assert m.get("autoscaler_scale_actions_total:down", 0) >= 1
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()[-2000:]
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    # ~20 failed ticks while down: logged once per change of error (the first reset, then
    # refused connections), not once per tick; and once when Redis answers again
    assert 1 <= events.count("queue_sample_failed") <= 3, events.count("queue_sample_failed")
    assert events.count("queue_sample_recovered") == 1


class SteppedClock:
    """The clock port: the loop's monotonic time, and a wall clock the test steps."""

    def __init__(self) -> None:
        self._inner = LoopClock()
        self.offset = 0.0

    def monotonic(self) -> float:
        return self._inner.monotonic()

    def wall(self) -> float:
        return self._inner.wall() + self.offset


JUMP_CONFIG = """
controller: {interval: 100ms, drain_timeout: 1s}
providers: {cloud: {kind: fake}}
pools:
  - name: chat
    queue: {kind: memory, name: jump}
    sla: {max_wait: 2s}
    capacity: {min: 1, max: 6, boot_time: 0s}
    policy: {kind: sla}
    behavior: {scale_down: {stabilization_window: 0s}}
    groups: [{name: main, provider: cloud}]
"""


async def test_a_wall_clock_step_neither_stalls_the_loop_nor_scales_in(
    registries: dict[str, Registry[Any]],
) -> None:
    registries["providers"].register("fake", FakeProvider)
    queue = reset_queue("jump")
    for _ in range(3):  # producers on a correct clock
        queue.put(time.time(), 1.0)
    clock = SteppedClock()
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(parse_config(JUMP_CONFIG, registries=registries),
                          registries=registries, clock=clock, telemetry=telemetry)
    sample = telemetry.registry.get_sample_value
    desired: list[float] = []
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.loop.run(
        stop, on_tick=lambda _: desired.append(sample(
            "autoscaler_desired_instances", {"pool": "chat"}) or 0)))
    try:
        await asyncio.sleep(0.6)
        before = len(desired)
        clock.offset = -3600.0  # NTP steps the daemon's clock an hour back
        await asyncio.sleep(0.6)
        invalid = sample("autoscaler_observation_invalid_total",
                         {"pool": "chat", "reason": "future"}) or 0
        assert invalid > 0  # the producers' stamps now read as future: unknown, not 0
        during = len(desired)
        clock.offset = +3600.0  # and an hour forward
        await asyncio.sleep(0.6)
        assert not run.done()
    finally:
        stop.set()
        await asyncio.wait_for(run, 5)
        await daemon.close(1.0)
    # the grid runs on the loop's monotonic clock: ~6 ticks per 0.6 s in every phase
    # (a step that reached the grid would either stall it for an hour or fire a burst)
    assert 2 <= before <= 8 and 2 <= during - before <= 8 and 2 <= len(desired) - during <= 8
    assert not sample("autoscaler_scale_actions_total", {"pool": "chat", "direction": "down"})
    assert all(1 <= d <= 6 for d in desired)  # an hour-old wait scales out, within max
