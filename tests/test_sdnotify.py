"""``sd_notify`` against a real unix datagram socket and a real ``autoscaler run`` process, and
the metrics a dashboard reads (groups, markets, cost, rates, build, process) from the same
daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.model import Decision, Observation
from autoscaler.runtime.loop import PoolTick
from autoscaler.runtime.sdnotify import Notifier, socket_address, tick_status, watchdog_interval_s
from autoscaler.testing import free_port

CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 7s}}
pools:
  - name: chat
    queue: {{kind: memory, name: proc}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 4, boot_time: 0s}}
    groups: [{{name: local, provider: local, market: spot, hourly_price: 1.5}}]
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A socket path must fit in 108 bytes: pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def receive(sock: socket.socket, deadline: float) -> list[dict[str, str]]:
    """Every datagram until ``deadline``, each as its ``KEY=value`` lines."""
    got = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        got.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
    return got


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def run_daemon_with_socket(tmp: Path, notify_socket: str, sock: socket.socket,
                           ) -> tuple[list[dict[str, str]], list[dict[str, str]], str, int]:
    """Start ``autoscaler run`` with ``NOTIFY_SOCKET``; return the messages before and after
    SIGTERM, a /metrics page taken while it ran, and its exit status."""
    port = free_port()
    config = tmp / "policy.yaml"
    config.write_text(CONFIG.format(port=port))
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": "5000000"}
    proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        running: list[dict[str, str]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("WATCHDOG" in m for m in running) < 5:
            running += receive(sock, min(deadline, time.monotonic() + 1))
        page = metrics_text(port)
        proc.send_signal(signal.SIGTERM)
        _out, stderr = proc.communicate(timeout=30)
        stopping = receive(sock, time.monotonic() + 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    return running, stopping, page, proc.returncode


def check_protocol(running: list[dict[str, str]], stopping: list[dict[str, str]]) -> None:
    assert running, "no sd_notify datagram arrived"
    first = running[0]
    assert first.get("READY") == "1", running[:3]
    assert "1/1 pools decided" in first["STATUS"]
    assert sum(m.get("READY") == "1" for m in running) == 1, "READY=1 is sent once"
    assert sum(m.get("WATCHDOG") == "1" for m in running) >= 5, "a WATCHDOG=1 per tick"
    assert all("STOPPING" not in m for m in running)
    stop = [m for m in stopping if m.get("STOPPING") == "1"]
    assert len(stop) == 1, stopping
    # The stop timeout follows drain_timeout (7 s) plus the shutdown's grace, not the unit.
    assert int(stop[0]["EXTEND_TIMEOUT_USEC"]) >= 7_000_000
    assert "draining" in stop[0]["STATUS"]


def test_daemon_speaks_sd_notify_on_a_path_socket_and_exports_group_metrics(
    short_dir: Path,
) -> None:
    path = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        running, stopping, page, _rc = run_daemon_with_socket(short_dir, str(path), sock)
    check_protocol(running, stopping)

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(page) for s in family.samples}
    group = (("group", "local"), ("market", "spot"), ("pool", "chat"))
    assert samples[("autoscaler_group_running_instances", group)] == 2
    assert samples[("autoscaler_group_target_instances", group)] == 2
    assert samples[("autoscaler_group_available", (("group", "local"), ("pool", "chat")))] == 1
    # 2 billed instances x $1.5/h
    assert samples[("autoscaler_cost_rate_usd_per_hour", group)] == pytest.approx(3.0)
    build = [labels for name, labels in samples if name == "autoscaler_build_info"]
    assert build == [(("python", ".".join(map(str, sys.version_info[:3]))),
                      ("version", "0.1.0"))]
    assert samples[("process_resident_memory_bytes", ())] > 10_000_000
    assert ("process_open_fds", ()) in samples
    assert ("autoscaler_arrival_rate", (("pool", "chat"),)) in samples
    assert samples[("autoscaler_sla_max_wait_seconds", (("pool", "chat"),))] == 2.0
    assert samples[("autoscaler_capacity_max_instances", (("pool", "chat"),))] == 4


def test_daemon_speaks_sd_notify_on_an_abstract_socket(short_dir: Path) -> None:
    name = f"autoscaler-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        running, stopping, _page, _rc = run_daemon_with_socket(short_dir, "@" + name, sock)
    check_protocol(running, stopping)


def test_without_notify_socket_nothing_is_sent_and_a_gone_socket_does_not_raise(
    short_dir: Path,
) -> None:
    assert not Notifier.from_environment({}).send("READY=1")
    gone = Notifier(str(short_dir / "nobody-listens"))
    assert gone.send("READY=1") is False  # logged once, never raised
    gone.on_tick([])
    assert not gone.ready
    gone.close()


def test_socket_address_and_watchdog_environment() -> None:
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000",
                                "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


def test_status_line_names_failing_pools() -> None:
    decision = Decision("a", 0.0, 1, 3, {"g": 3}, "up")
    ticks = [PoolTick("a", Observation(0.0, 1), None, decision),
             PoolTick("b", None, None, errors=("no observation",))]
    assert tick_status(ticks) == "1/2 pools decided, 3 instances desired; errors in b"

