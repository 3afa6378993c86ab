"""End to end: real redis-server, the real daemon process, real ``autoscaler worker`` processes.

A burst makes the daemon scale out within two ticks of the oldest wait crossing ``max_wait``;
the queue drains; then the fleet scales back in while requests keep arriving, and every pushed
request is completed exactly once (the ``:completed`` counter equals the number pushed, nothing
is left in the queue, the processing list or the dead-letter list).

Real time by nature; every wait polls against a generous deadline and no assertion is on how long
something took, except the scale-out latency, which is measured in ticks of the daemon's grid.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from autoscaler.testing import free_port

INTERVAL = 0.5
MAX_WAIT = 2.0
KEY = "e2e:chat"
BURST = 24
SERVICE_S = 0.25

CONFIG = """
controller:
  interval: {interval}s
  metrics_address: "127.0.0.1:{port}"
  drain_timeout: 20s
  log_level: info
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "{key}"}}
    sla: {{max_wait: {max_wait}s}}
    capacity: {{min: 1, max: 4, slots_per_instance: 1, boot_time: 500ms}}
    policy: {{kind: threshold}}
    behavior:
      scale_down: {{stabilization_window: 2s}}
    groups:
      - name: local
        provider: local
        output: discard
        command: {command}
"""


class DaemonProcess:
    """``autoscaler run`` as a child; collects its JSON log events as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.events.append(json.loads(line))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    async def until(self, predicate: Any, what: str, deadline: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while not predicate():
            if loop.time() > end or self.proc.returncode is not None:
                pytest.fail(f"gave up waiting for {what}; last events: {self.events[-5:]}")
            await asyncio.sleep(0.05)


def wall(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


async def push(client: Any, n: int, first_id: int) -> float:
    """LPUSH ``n`` requests (and count them in ``:enqueued``); returns their enqueue time."""
    now = datetime.now().timestamp()
    payloads = [json.dumps({"id": f"r{first_id + i}", "enqueued_at": now,
                            "service_s": SERVICE_S}) for i in range(n)]
    async with client.pipeline(transaction=True) as pipe:
        pipe.lpush(KEY, *payloads)
        pipe.incrby(KEY + ":enqueued", n)
        await pipe.execute()
    return now


async def queue_state(client: Any) -> tuple[int, int, int, int]:
    """Depth, requests held by workers (every consumer's processing list), dead, completed."""
    lists = [k async for k in client.scan_iter(match=KEY + ":processing*")]
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(KEY)
        for name in lists:
            pipe.llen(name)
        pipe.llen(KEY + ":dead")
        pipe.get(KEY + ":completed")
        depth, *held, dead, completed = await pipe.execute()
    return depth, sum(held), dead, int(completed or 0)


def tick_metrics(port: int) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = dict(line.split(" ")[:2] for line in text.splitlines()
                  if line.startswith("autoscaler_tick_duration_seconds_"))
    return (float(values["autoscaler_tick_duration_seconds_sum"]),
            float(values["autoscaler_tick_duration_seconds_count"]))


def worker_command() -> list[str]:
    """No ``--url``: the local provider passes the pool's URL as ``AUTOSCALER_QUEUE_URL``."""
    script = Path(sys.executable).with_name("autoscaler")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "autoscaler"]
    return [*head, "worker", "--kind", "redis-list", "--key", KEY]


async def test_scale_out_drain_and_scale_in_lose_nothing(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "policy.yaml"
    config.write_text(CONFIG.format(
        interval=INTERVAL, port=port, url=redis_url, key=KEY, max_wait=MAX_WAIT,
        command=json.dumps(worker_command()),
    ))
    client: Any = aioredis.Redis.from_url(redis_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler", "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    daemon = DaemonProcess(proc)
    try:
        # The daemon raises the empty fleet to min (1) and the worker comes up.
        await daemon.until(lambda: daemon.named("instance_started"), "the first worker")
        await asyncio.sleep(2 * INTERVAL)

        # Burst: one worker needs BURST * SERVICE_S = 6 s; the SLA allows 2 s.
        pushed_at = await push(client, BURST, 0)

        def scaled_out() -> list[dict[str, Any]]:
            return [e for e in daemon.named("decision") if e["desired"] > 1]

        await daemon.until(scaled_out, "a scale-out decision")
        out = scaled_out()[0]
        crossing = pushed_at + MAX_WAIT
        latency_ticks = (wall(out) - crossing) / INTERVAL
        print(f"\nscale-out: {out['current']} -> {out['desired']} at {wall(out) - pushed_at:.2f}s "
              f"after the burst, {latency_ticks:+.1f} ticks from the max_wait crossing")
        assert latency_ticks <= 2.0
        assert out["pool"] == "chat" and out["targets"] == {"local": out["desired"]}

        async def drained(total: int) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + 90
            while await queue_state(client) != (0, 0, 0, total):
                if loop.time() > end:
                    pytest.fail(f"queue not drained: {await queue_state(client)}, want {total}")
                await asyncio.sleep(0.1)

        await drained(BURST)

        # Scale-in while requests keep arriving: nothing may be lost to a SIGTERMed worker.
        total = BURST
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while not any(e["direction"] == "down" and e["desired"] == 1
                      for e in daemon.named("decision")):
            if loop.time() > end:
                pytest.fail(f"no scale-in to min; decisions: {daemon.named('decision')}")
            await push(client, 1, total)
            total += 1
            await asyncio.sleep(0.4)
        for _ in range(5):  # and a little more after the last scale-in decision
            await push(client, 1, total)
            total += 1
            await asyncio.sleep(0.4)
        await drained(total)
        stopped = daemon.named("instance_stopped")
        assert stopped and not daemon.named("instance_exited")  # drained, not crashed
        tick_sum, tick_count = tick_metrics(port)
        print(f"requests: {total} pushed, {total} completed exactly once; "
              f"{len(stopped)} workers drained on scale-in; "
              f"mean tick {1000 * tick_sum / tick_count:.1f} ms over {tick_count:.0f} ticks")
        assert not daemon.named("provider_error")

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await daemon.reader
        assert daemon.named("daemon_stopped")[-1]["failure"] is None
        assert await queue_state(client) == (0, 0, 0, total)
    finally:
        if proc.returncode is None:  # a failed test: let the daemon stop its workers first
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await client.aclose()
