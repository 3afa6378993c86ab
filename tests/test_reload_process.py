"""Hot reload of a real ``autoscaler run --watch-config`` process: SIGHUP applies a good file
without disturbing the pool that stays, a bad file (seen by the watch) keeps the running config
and is counted, the daemon still exits 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from autoscaler.testing import free_port
from tests.test_daemon_process import metric

HEAD = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 5s}}
providers: {{spare: {{kind: local}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: reload}}
    sla: {{max_wait: {wait}}}
    capacity: {{min: 2, max: 4, boot_time: 0s}}
    groups: [{{name: local, provider: local}}]
"""
BATCH = """
  - name: batch
    queue: {kind: memory, name: reload-batch}
    sla: {max_wait: 10s}
    capacity: {min: 1, max: 2, boot_time: 0s}
    groups: [{name: batchers, provider: spare}]
"""


def plain(port: int, name: str) -> float | None:
    """A sample without a pool label, read like ``metric``."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what} (rc={proc.poll()})")


def test_sighup_and_watch_reload_a_running_daemon(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "autoscaler.yaml"
    path.write_text(HEAD.format(port=port, wait="2s"))
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "-c", str(path), "--watch-config"],
            stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        wait_for(lambda: metric(port, "autoscaler_running_instances", "chat") == 2,
                 "chat at min=2", proc)
        # SIGHUP: chat's SLA changes (its instances stay), batch is added on its own account
        path.write_text(HEAD.format(port=port, wait="3s") + BATCH)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: metric(port, "autoscaler_running_instances", "batch") == 1,
                 "batch started by the reload", proc)
        assert plain(port, "autoscaler_config_reloads_total") == 1
        # the watch: a bad file is rejected, counted, and the daemon runs on
        path.write_text(path.read_text().replace("max: 4", "max: 1"))
        wait_for(lambda: plain(port, "autoscaler_config_reload_failures_total") == 1,
                 "the bad file rejected", proc)
        time.sleep(0.5)  # a few ticks on the running config
        assert metric(port, "autoscaler_running_instances", "chat") == 2
        assert metric(port, "autoscaler_desired_instances", "batch") == 1
        # the watch again: batch removed. Its account is retired: a cloud's instances would be
        # left alone; local ones are this daemon's children and stop with their client
        path.write_text(HEAD.format(port=port, wait="3s"))
        wait_for(lambda: plain(port, "autoscaler_config_reloads_total") == 2,
                 "the good file applied by the watch", proc)
        wait_for(lambda: metric(port, "autoscaler_desired_instances", "batch") is None,
                 "batch's gauges dropped", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert proc.returncode == 0, events[-5:]
    names = [e["event"] for e in events]
    reloaded = [e for e in events if e["event"] == "config_reloaded"]
    assert [(e["trigger"], e["added"], e["removed"], e["changed"]) for e in reloaded] == [
        ("signal", ["batch"], [], ["chat"]), ("watch", [], ["batch"], [])]
    [failed] = [e for e in events if e["event"] == "config_reload_failed"]
    assert failed["trigger"] == "watch"
    assert failed["errors"][0].startswith(f"{path}:")
    assert "capacity" in failed["errors"][0]
    assert [e["pool"] for e in events if e["event"] == "pool_removed"] == ["batch"]
    # chat's two instances were never restarted by the reloads: stopped once, at shutdown
    started = [e["group"] for e in events if e["event"] == "instance_started"]
    assert started.count("local") == 2 and started.count("batchers") == 1
    assert names[-1] == "daemon_stopped"
    drain = names.index("daemon_draining")
    assert [e["group"] for e in events[:drain] if e["event"] == "instance_stopped"] == [
        "batchers"]
    assert [e["group"] for e in events[drain:] if e["event"] == "instance_stopped"] == [
        "local", "local"]
