"""``autoscaler run`` as a real process: JSON logs, metrics over HTTP, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

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
