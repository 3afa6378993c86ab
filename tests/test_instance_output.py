"""Instances' output never interleaves with the daemon's JSON log; the local provider gives each
instance the pool's slots. Real daemon processes, real instance processes, real redis-server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.providers.local.output import LineSplitter, child_level
from autoscaler.testing import free_port

DEADLINE_S = 60.0
"""How long to wait for a state: generous, never a timed assertion."""


def test_line_splitter_cuts_lines_and_bounds_them() -> None:
    splitter = LineSplitter(max_bytes=5)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\r\nde\n\n") == [(b"abc", False), (b"de", False), (b"", False)]
    # Too long: the first 5 bytes, marked, and the rest of that line is dropped.
    assert splitter.feed(b"0123456789") == [(b"01234", True)]
    assert splitter.feed(b"more of the same line\nok\nlast") == [(b"ok", False)]
    assert splitter.flush() == [(b"last", False)]
    assert splitter.flush() == []
    exact = LineSplitter(max_bytes=3)
    assert exact.feed(b"abc\nabcd\n") == [(b"abc", False), (b"abc", True)]
    assert exact.feed(b"abc") == [] and exact.feed(b"d") == [(b"abc", True)]
    assert exact.flush() == []  # the cut line's rest is never emitted


def test_child_level_follows_a_json_child_and_defaults_to_info() -> None:
    assert child_level('{"event": "worker_failed", "level": "error"}') == "error"
    assert child_level('{"level": "warn"}') == "warning"
    assert child_level('{"level": "shouting"}') == "info"
    assert child_level('{"level": 3}') == "info"
    assert child_level("{not json") == "info"
    assert child_level("[1, 2]") == "info"
    assert child_level("plain text") == "info"


CHATTY = r"""
import json, os, sys, time
me = os.environ["AUTOSCALER_INSTANCE"]
print(f"hello from {me} slots={os.environ['AUTOSCALER_SLOTS']}", flush=True)
sys.stderr.write(json.dumps({"event": "worker_broke", "level": "error", "who": me}) + "\n")
sys.stdout.write("x" * 20000 + "\n")
for n in range(300):
    sys.stdout.write(f"chatter {n} from {me}\n")
    sys.stderr.write(f"err {n} from {me}\n")
    if n % 7 == 0:
        sys.stdout.flush(); sys.stderr.flush()
sys.stdout.write("{\"half\": "); sys.stdout.flush()
sys.stderr.write(f"ready {me}\n"); sys.stderr.flush()
sys.stdout.write("an object\"} no newline"); sys.stdout.flush()
time.sleep(3600)
"""

CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 5s}}
pools:
  - name: chat
    queue: {{kind: memory, name: chatty}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 2, slots_per_instance: 3, boot_time: 0s}}
    groups:
      - {{name: local, provider: local, command: {command}}}
"""


def test_chatty_instances_leave_every_daemon_log_line_json(tmp_path: Path) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    path = tmp_path / "policy.yaml"
    path.write_text(CONFIG.format(port=free_port(),
                                  command=json.dumps([sys.executable, str(script)])))
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while log_path.read_text().count('"ready ') < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line of the daemon's stderr is JSON
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    output = [e for e in events if e["event"] == "instance_output"]
    started = {e["instance"]: e["pid"] for e in events if e["event"] == "instance_started"}
    assert sorted(started) == [1, 2]
    for instance, pid in started.items():
        mine = [e for e in output if e["instance"] == instance]
        assert all(e["pid"] == pid and e["group"] == "local" for e in mine)
        out = [e["line"] for e in mine if e["stream"] == "stdout"]
        err = [e["line"] for e in mine if e["stream"] == "stderr"]
        # Each stream's lines arrive whole and in order; the pool's slots reach the instance.
        assert out[0] == f"hello from {instance} slots=3"
        assert out[2:302] == [f"chatter {n} from {instance}" for n in range(300)]
        assert err[1:301] == [f"err {n} from {instance}" for n in range(300)]
        assert err[301] == f"ready {instance}"
        # A line past the bound is cut and marked; the last line, without newline, arrives at
        # the instance's exit.
        [long] = [e for e in mine if e.get("truncated")]
        assert long["line"] == "x" * 8192 and long["stream"] == "stdout"
        assert out[-1] == '{"half": an object"} no newline'
        # A child's own JSON error stays an error in the daemon's log.
        [broke] = [e for e in mine if "worker_broke" in e["line"]]
        assert broke["level"] == "error" and json.loads(broke["line"])["who"] == str(instance)
        assert {e["level"] for e in mine if e is not broke} == {"info"}
    assert [e["event"] for e in events].count("instance_stopped") == 2


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("pool") == "chat":
                return float(sample.value)
    return None


SLOTS_CONFIG = """
controller: {{interval: 200ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 1s}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: q}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 8, max: 8, slots_per_instance: 2, boot_time: 0s}}
    policy: {{kind: fixed, instances: 8}}
    groups:
      - name: local
        provider: local
        command: {command}
"""


def test_eight_instances_of_two_slots_hold_sixteen_requests(
    tmp_path: Path, redis_url: str
) -> None:
    """The daemon's own sampler sees 16 in flight: the capacity the pool models (8 x 2)."""
    r: Any = redis.Redis.from_url(redis_url)
    r.lpush("q", *[json.dumps({"id": i, "service_s": 3600}) for i in range(40)])
    port = free_port()
    worker = [str(Path(sys.executable).with_name("autoscaler")), "worker", "--url", redis_url,
              "--kind", "redis-list", "--key", "q", "--block", "0.2"]  # no --slots: from env
    path = tmp_path / "policy.yaml"
    path.write_text(SLOTS_CONFIG.format(port=port, url=redis_url, command=json.dumps(worker)))
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 2 * DEADLINE_S  # eight interpreters start on a busy box
        while metric(port, "autoscaler_queue_in_flight") != 16:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"in flight never reached 16: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        assert metric(port, "autoscaler_queue_depth") == 24
        assert len(r.smembers("q:consumers")) == 16  # 8 workers x 2 slot consumers
        proc.send_signal(signal.SIGTERM)
        # Requests of an hour cannot finish within drain_timeout (1s): the workers are killed
        # at the deadline, which the daemon reports with exit status 1 (issue 10 item 6).
        assert proc.wait(timeout=DEADLINE_S) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        r.close()
    events = [json.loads(line) for line in log_path.read_text().splitlines()]
    started = [json.loads(e["line"]) for e in events if e["event"] == "instance_output"
               and '"worker_started"' in e["line"]]
    assert len(started) == 8 and {s["slots"] for s in started} == {2}
    [incomplete] = [e for e in events if e["event"] == "drain_incomplete"]
    assert len(incomplete["killed"]) == 8
