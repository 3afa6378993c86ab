"""The daemon's HTTP endpoint (real sockets on 127.0.0.1): /metrics, /healthz, /readyz, 404
elsewhere, a socket timeout and a cap on concurrent connections; and the saturation and
recommendation gauges fed by a real tick."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.core.model import Observation
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.http import STALE_TICKS, Health, serve
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue
from tests.test_telemetry import scrape


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def telemetry() -> Iterator[PrometheusTelemetry]:
    t = PrometheusTelemetry()
    yield t
    t.shutdown()


def test_paths_health_readiness_and_404(telemetry: PrometheusTelemetry) -> None:
    telemetry.health.configure(60.0, ("chat", "batch"))
    port = telemetry.serve("127.0.0.1", 0)
    status, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["ticks"] == 0
    assert get(port, "/healthz")[0] == 200  # young daemon: within 3 intervals of its start
    assert get(port, "/")[0] == 404 and get(port, "/metricsx")[0] == 404
    telemetry.record_observation("chat", Observation(time=1.0, depth=1, oldest_wait_s=0.5))
    telemetry.record_tick(0.01)
    status, body = get(port, "/readyz")  # batch never sampled: not ready
    assert status == 503 and json.loads(body)["pools_not_sampled"] == ["batch"]
    telemetry.record_observation("batch", Observation(time=1.0, depth=0, fresh=False))
    assert get(port, "/readyz")[0] == 503  # a stale copy is not a sample
    telemetry.record_observation("batch", Observation(time=2.0, depth=0))
    status, body = get(port, "/readyz")
    assert status == 200 and json.loads(body) == {"status": "ok", "ticks": 1,
                                                  "pools_not_sampled": []}
    status, body = get(port, "/healthz")
    assert status == 200 and json.loads(body)["ticks"] == 1
    status, body = get(port, "/metrics?x=1")
    assert status == 200 and b"autoscaler_queue_depth" in body


def test_healthz_fails_with_the_age_once_ticks_stop() -> None:
    health = Health(interval_s=0.01, pools=())
    server, _ = serve("127.0.0.1", 0, PrometheusTelemetry().registry, health)
    try:
        health.ticked()
        time.sleep(STALE_TICKS * 0.01 + 0.05)  # no tick for more than 3 intervals
        status, body = get(server.server_port, "/healthz")
        data = json.loads(body)
        assert status == 503 and data["status"] == "fail"
        assert data["last_tick_age_s"] >= data["max_age_s"] == STALE_TICKS * 0.01
        health.ticked()
        health.interval_s = 60.0
        assert get(server.server_port, "/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def idle(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_idle_connections_are_capped_and_timed_out() -> None:
    health = Health()
    server, _ = serve("127.0.0.1", 0, PrometheusTelemetry().registry, health,
                      timeout_s=1.0, max_connections=4, probe_slots=0)
    port = server.server_port
    held: list[socket.socket] = []
    try:
        held = [idle(port) for _ in range(4)]  # they send nothing: each holds a slot
        for _ in range(200):  # until the server has accepted them all (no timing asserted)
            if server.active == 4:
                break
            time.sleep(0.01)
        assert server.active == 4
        extra = [idle(port) for _ in range(40)]
        for s in extra:  # over the cap: answered 503 at once, unread, and closed; no thread
            assert read_all(s).startswith(b"HTTP/1.0 503")
            s.close()
        assert server.rejected == 40 and server.active == 4  # no thread for the refused
        for s in held:  # the socket timeout drops idle clients: recv sees the close
            assert read_all(s) == b""
        status = 0
        for _ in range(100):  # slots are released just after the close the client saw
            status = get(port, "/healthz")[0]
            if status != 503:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        for s in held:
            s.close()
        server.shutdown()
        server.server_close()


def test_health_probes_pass_while_idle_clients_hold_every_regular_slot() -> None:
    health = Health()
    health.ticked()
    server, _ = serve("127.0.0.1", 0, PrometheusTelemetry().registry, health,
                      timeout_s=30.0, max_connections=4, probe_slots=2, probe_timeout_s=0.3)
    port = server.server_port
    held: list[socket.socket] = []
    try:
        held = [idle(port) for _ in range(4)]  # idle for far longer than the probes below
        for _ in range(200):
            if server.active == 4:
                break
            time.sleep(0.01)
        assert server.active == 4
        # a probe gets a probe slot and its answer, though every regular slot is held
        assert get(port, "/healthz")[0] == 200
        status, body = get(port, "/readyz")
        assert status == 200 and b'"status": "ok"' in body
        assert get(port, "/metrics")[0] == 503  # a probe slot serves probes only
        # an idle client in a probe slot is dropped after the short probe timeout
        squatters = [idle(port) for _ in range(2)]
        for s in squatters:
            assert read_all(s) == b""
            s.close()
        assert get(port, "/healthz")[0] == 200
        assert server.rejected == 0
    finally:
        for s in held:
            s.close()
        server.shutdown()
        server.server_close()


CONFIG = """
controller: {interval: 1s, drain_timeout: 2s}
pools:
  - name: chat
    queue: {kind: memory, name: h-sat}
    sla: {max_wait: 2s}
    capacity: {min: 0, max: 2, boot_time: 60s}
    policy: {kind: threshold}
    groups:
      - {name: local, provider: local}
"""


async def test_saturation_gauge_and_warning_and_recommended(
    registries: dict[str, Registry[Any]], telemetry: PrometheusTelemetry,
) -> None:
    clock = ManualClock()
    queue = reset_queue("h-sat")
    for _ in range(8):
        queue.put(clock.wall(), 1.0)
    clock.advance(5.0)  # oldest wait 5 s > max_wait 2 s; the policy wants 8, max is 2
    daemon = Daemon.build(parse_config(CONFIG, registries=registries), registries=registries,
                          clock=clock, telemetry=telemetry)
    port = telemetry.serve("127.0.0.1", 0)
    await daemon.start()
    try:
        with capture_logs() as logs:
            [tick] = await daemon.loop.tick()
            await daemon.loop.tick()  # still saturated: no second warning
        assert tick.decision is not None and tick.decision.desired == 2
        warnings = [e for e in logs if e["event"] == "pool_saturated"]
        assert len(warnings) == 1 and warnings[0]["pool"] == "chat"
        assert warnings[0]["cause"] == "capacity_max"
        assert warnings[0]["oldest_wait_s"] > 2 and warnings[0]["max_instances"] == 2
        chat = (("pool", "chat"),)
        samples = scrape(port)
        assert samples[("autoscaler_pool_saturated", chat)] == 1
        assert samples[("autoscaler_recommended_instances", chat)] == 8
        assert samples[("autoscaler_desired_instances", chat)] == 2
        while queue.take_nowait(clock.wall()) is not None:  # the backlog is served
            pass
        with capture_logs() as logs:
            await daemon.loop.tick()
        assert [e["pool"] for e in logs if e["event"] == "pool_saturation_ended"] == ["chat"]
        assert scrape(port)[("autoscaler_pool_saturated", chat)] == 0
    finally:
        await daemon.close(2.0)
