"""``autoscaler run`` as a real process: JSON logs, metrics over HTTP, graceful SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.providers.local import client as local
from autoscaler.testing import free_port

CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 5s}}
pools:
  - name: chat
    queue: {{kind: memory, name: proc}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 4, boot_time: 0s}}
    groups: [{{name: local, provider: local}}]
"""


def metric(port: int, name: str, pool: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("pool") == pool:
                return float(sample.value)
    return None


def test_daemon_serves_metrics_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "policy.yaml"
    path.write_text(CONFIG.format(port=port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "run", "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        running = None
        while time.monotonic() < deadline and proc.poll() is None:
            running = metric(port, "autoscaler_running_instances", "chat")
            if running == 2:
                break
            time.sleep(0.1)
        assert running == 2, "the daemon never reported min=2 running instances"
        assert metric(port, "autoscaler_desired_instances", "chat") == 2
        assert metric(port, "autoscaler_queue_depth", "chat") == 0
        for path, status in (("/healthz", 200), ("/readyz", 200), ("/nope", 404)):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    got = r.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, path
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert stdout == ""  # stdout is reserved for --once
    events = [json.loads(line) for line in stderr.splitlines()]  # every log line is JSON
    names = [e["event"] for e in events]
    assert names[0] == "daemon_started" and names[-1] == "daemon_stopped"
    assert "signal_received" in names and "decision" in names
    assert all("timestamp" in e and "level" in e for e in events)
    assert names.count("instance_stopped") == 2


ORPHAN_CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}"}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: orphans}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 2, boot_time: 0s}}
    groups:
      - name: local
        provider: local
        command: ["{python}", "-c", "{script}"]
"""
INSTANCE = (
    "import os, pathlib, time; "
    "pathlib.Path(r'{folder}', str(os.getpid())).touch(); time.sleep(3600)"
)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper that may never come (PID 1 in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(local.SETPRIV is None, reason="needs Linux and setpriv (util-linux)")
def test_instances_get_sigterm_when_the_daemon_is_killed(tmp_path: Path, redis_url: str) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    path = tmp_path / "policy.yaml"
    path.write_text(ORPHAN_CONFIG.format(
        port=free_port(), url=redis_url, python=sys.executable,
        script=INSTANCE.format(folder=folder),
    ))
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(folder.iterdir())) < 2:
            time.sleep(0.05)
        pids = [int(p.name) for p in folder.iterdir()]
        assert len(pids) == 2, f"no two instances: {log.read_text()[-2000:]}"
        proc.kill()  # SIGKILL: no drain, no cleanup of its own
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(alive(p) for p in pids), "instances outlived the daemon"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in [int(p.name) for p in folder.iterdir()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
