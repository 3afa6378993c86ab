"""Chaos with real parts: garbage and huge payloads at the head of a real Redis list under a
running ``autoscaler run`` (``step`` policy, the one that added 4 instances from one payload
before), served afterwards by a real ``autoscaler worker``.

Each payload is RPUSHed to become the queue's head (the next one popped) while the one worker is
busy with a long request, and the daemon is watched until it counted it in
``autoscaler_observation_invalid_total`` under the expected reason (or, for the valid ones, read
a real wait). Asserted throughout: no scale-out (every real wait here is far below the 30 s SLA,
so only a believed garbage time could drive one); and at the end no request lost: every payload
is completed or dead-lettered by the worker, none left queued or held. Deadlines only bound a
broken build."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.testing import free_port
from tests.test_chaos_workers import queue_state, worker_command

KEY = "chaos:garbage"
TEN_MB = "x" * (10 << 20)

CONFIG = """
controller: {{interval: 250ms, sample_timeout: 200ms, metrics_address: "127.0.0.1:{port}",
             drain_timeout: 20s, state_store: none}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "{key}"}}
    sla: {{max_wait: 30s}}
    capacity: {{min: 1, max: 4, boot_time: 0s}}
    policy: {{kind: step}}
    groups:
      - name: local
        provider: local
        output: discard
        command: {command}
"""


def metrics(port: int) -> dict[str, float]:
    """``pool="chat"`` samples by name, the invalid counter and scale actions by label."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("pool", "chat") != "chat" or s.name.endswith("_created"):
                continue
            if s.name == "autoscaler_observation_invalid_total":
                out[f"invalid:{s.labels['reason']}"] = float(s.value)
            elif s.name == "autoscaler_scale_actions_total":
                out[f"scale:{s.labels['direction']}"] = float(s.value)
            else:
                out[s.name] = float(s.value)
    return out


def garbage(now: float) -> list[tuple[str, str | None, bool]]:
    """(payload, the reason the daemon must count or None for a valid time, dead-lettered by
    the worker)."""
    return [
        ("not json {", "unreadable", True),
        ("[1, 2, 3]", "unreadable", True),
        ('{"enqueued_at": "yesterday"}', "unreadable", False),
        ('{"enqueued_at": [1700000000]}', "unreadable", False),
        ('{"enqueued_at": 0}', "before_epoch", False),
        ('{"enqueued_at": -5}', "before_epoch", False),
        (json.dumps({"enqueued_at": now + 3600}), "future", False),
        (json.dumps({"enqueued_at": now * 1000}), "milliseconds", False),
        ('{"enqueued_at": 1e999}', "non_finite", False),
        ('{"meta": {"enqueued_at": 0}}', "unreadable", False),
        (json.dumps({"meta": {"enqueued_at": 0}, "enqueued_at": now}), None, False),
        (json.dumps({"enqueued_at": now, "service_s": "slow"}), None, True),
        (json.dumps({"enqueued_at": now, "prompt": TEN_MB}), None, False),
        (json.dumps({"prompt": TEN_MB, "enqueued_at": now}), "unreadable", False),
    ]


def test_garbage_and_huge_heads_never_scale_out_and_lose_nothing(
    tmp_path: Path, redis_url: str,
) -> None:
    port = free_port()
    config = tmp_path / "c.yaml"
    command = [*worker_command(KEY), "--service-time", "0.05"]
    config.write_text(CONFIG.format(port=port, url=redis_url, key=KEY,
                                    command=json.dumps(command)))
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)

    baseline: dict[str, float] = {}

    def watch(until: str, check: Callable[[dict[str, float]], bool],
              deadline_s: float = 30) -> dict[str, float]:
        """Poll until ``check`` holds; never a scale-out meanwhile."""
        deadline = time.monotonic() + deadline_s
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                m = metrics(port)
            except OSError:
                m = {}
            if m and baseline:  # the first action (0 -> min) came before the payloads
                assert m.get("scale:up", 0) == baseline["scale:up"], f"scaled out: {until}"
                assert m["autoscaler_desired_instances"] <= 1, f"{until}: {m}"
            if m and check(m):
                return m
            assert time.monotonic() < deadline, f"gave up waiting: {until}; {m}"
            time.sleep(0.05)

    def invalid(m: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in m.items() if k.startswith("invalid:")}

    try:
        deadline = time.monotonic() + 30
        while not client.smembers(KEY + ":consumers"):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.05)
        client.lpush(KEY, json.dumps({"enqueued_at": time.time(), "service_s": 12}))
        while queue_state(client, KEY)[1] != 1:  # the worker is busy with it
            assert time.monotonic() < deadline
            time.sleep(0.02)
        baseline.update(watch("started", lambda m: m.get("scale:up") == 1))
        stamped = time.time()
        payloads = garbage(stamped)
        for payload, reason, _dead in payloads:
            client.rpush(KEY, payload)  # the new head (the worker is busy: nothing is popped)
            depth = client.llen(KEY)
            label = payload[:40]
            seen = watch(label, lambda m, d=depth: m["autoscaler_queue_depth"] == d)
            ticks = seen["autoscaler_tick_duration_seconds_count"]
            # two more ticks with this payload at the head: what they counted is its doing
            later = watch(label, lambda m, t=ticks: (
                m["autoscaler_tick_duration_seconds_count"] >= t + 2))
            assert later["autoscaler_queue_depth"] == depth
            assert later["autoscaler_observation_stale"] == 0, label
            counted = {k: later[k] - seen.get(k, 0) for k in invalid(later)
                       if later[k] > seen.get(k, 0)}
            wait = later["autoscaler_queue_oldest_wait_seconds"]
            if reason is None:  # a valid time: the real wait, not 57 years nor a hidden 0
                assert not counted, (label, counted)
                assert 0 < wait <= time.time() - stamped, (label, wait)
            else:
                assert set(counted) == {f"invalid:{reason}"}, (label, counted)
                assert math.isnan(wait), (label, wait)
        depth, held, _dead, completed = queue_state(client, KEY)
        assert (depth, held, completed) == (len(payloads), 1, 0), "the head moved under the test"
        total = len(payloads) + 1
        dead_expected = sum(1 for _, _, d in payloads if d)
        watch("drained", lambda m: queue_state(client, KEY)[:2] == (0, 0), deadline_s=60)
        assert queue_state(client, KEY) == (0, 0, dead_expected, total - dead_expected)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
    assert proc.returncode == 0, log.read_text()[-2000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    reasons = {e["reason"] for e in events if e["event"] == "observation_invalid"}
    assert reasons == {"unreadable", "before_epoch", "future", "milliseconds", "non_finite"}
