"""Chaos with real workers: Redis SIGKILLed and restarted under a running ``autoscaler run``
whose ``local`` group runs real ``autoscaler worker`` processes, with requests queued and in
service at the kill. Redis keeps an append-only file fsynced on every write, as a queue that
must not lose requests is run; the workers' heartbeat TTL (10 s) is longer than the outage, so
nothing is reclaimed twice.

Asserted: no scale-in while the daemon is blind, and every request pushed is completed exactly
once (``:completed`` equals the number pushed; the queue, every processing list and the
dead-letter list end empty). Deadlines only bound a broken build."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from autoscaler.testing import free_port
from tests.test_chaos import REDIS, restartable_redis, samples

KEY = "chaos:q"
SERVICE_S = 0.25

CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 20s,
             state_store: none}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "{key}"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 4, boot_time: 0s}}
    behavior: {{scale_down: {{stabilization_window: 0s}}}}
    groups:
      - name: local
        provider: local
        output: discard
        command: {command}
"""


def worker_command(key: str) -> list[str]:
    """No ``--url``: the local provider passes the pool's URL as ``AUTOSCALER_QUEUE_URL``."""
    return [sys.executable, "-m", "autoscaler", "worker", "--kind", "redis-list", "--key", key,
            "--heartbeat", "10", "--block", "0.2"]


def push(client: redis.Redis, n: int, first: int, key: str = KEY) -> None:
    now = time.time()
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(key, *[json.dumps({"id": f"r{first + i}", "enqueued_at": now,
                                      "service_s": SERVICE_S}) for i in range(n)])
        pipe.incrby(key + ":enqueued", n)
        pipe.execute()


def queue_state(client: redis.Redis, key: str = KEY) -> tuple[int, int, int, int]:
    """Depth, requests held by workers (every processing list), dead-lettered, completed."""
    held = sum(int(client.llen(name)) for name in client.scan_iter(match=key + ":processing*"))
    completed = client.get(key + ":completed")
    return (int(client.llen(key)), held, int(client.llen(key + ":dead")),
            int(completed or 0))


@pytest.mark.skipif(REDIS is None, reason="needs redis-server")
def test_redis_killed_with_requests_in_service_loses_none(tmp_path: Path) -> None:
    redis_port, port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(port=port, url=url, key=KEY,
                                    command=json.dumps(worker_command(KEY))))
    log = tmp_path / "daemon.log"
    with restartable_redis(redis_port, tmp_path, persistent=True) as start_redis:
        start_redis()
        client = redis.Redis.from_url(url, socket_timeout=5)
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while len(client.smembers(KEY + ":consumers")) < 2:  # both workers registered
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.05)
            push(client, 40, 0)  # 10 s of work for two workers; the SLA allows 2 s
            total = 40
            while queue_state(client)[1] < 2:  # requests in service at the kill
                assert time.monotonic() < deadline, queue_state(client)
                time.sleep(0.02)
            before = samples(port)
            assert before is not None
            at_kill = queue_state(client)
            start_redis.procs[-1].kill()  # type: ignore[attr-defined]
            start_redis.procs[-1].wait()  # type: ignore[attr-defined]
            blind_until = time.monotonic() + 2.0
            running = before["autoscaler_running_instances"]
            while time.monotonic() < blind_until:  # blind: nothing may be scaled in
                m = samples(port)
                assert m is not None and proc.poll() is None
                assert m["autoscaler_running_instances"] >= running, "scaled in while blind"
                assert m.get("autoscaler_scale_actions_total:down", 0) == before.get(
                    "autoscaler_scale_actions_total:down", 0)
                running = m["autoscaler_running_instances"]
                time.sleep(0.05)
            start_redis()  # the same append-only file: every acknowledged write is back
            push(client, 20, total)
            total += 20
            deadline = time.monotonic() + 90
            while (state := queue_state(client)) != (0, 0, 0, total):
                assert time.monotonic() < deadline and proc.poll() is None, (
                    f"not drained: {state}, want (0, 0, 0, {total})")
                time.sleep(0.1)
            print(f"\nat the kill: {at_kill[0]} queued, {at_kill[1]} in service, "
                  f"{at_kill[3]} completed; after the restart all {total} completed once")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert queue_state(client) == (0, 0, 0, total)
        client.close()
    assert proc.returncode == 0, log.read_text()[-2000:]
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "queue_sample_failed" in events and "queue_sample_recovered" in events
    assert "instance_exited" not in events  # no worker crashed on the outage
