"""The daemon's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz``, 404 elsewhere.

Why not ``prometheus_client.start_http_server``: it answers every path with the metrics text
and spawns one thread per connection with no socket timeout, so 300 idle connections hold 300
threads for ever. This server is the standard library's threaded server with two bounds:

- every connection's socket has a timeout (``timeout_s``): an idle or slow client is dropped;
- at most ``max_connections`` are served at once;
- beyond them, ``probe_slots`` more connections are kept for health probes: their socket
  timeout is ``probe_timeout_s`` (short) and they answer only ``/healthz`` and ``/readyz``
  (``503`` for anything else), so a client holding every regular slot idle cannot make a
  liveness probe fail: the probe's own request arrives at once, an idle holder of a probe slot
  is dropped within ``probe_timeout_s``;
- past both, a connection is answered ``503`` at once by the accepting thread (a short write,
  never a read) and closed.

What it does not guarantee: the refusal is written without reading the request, so a client
whose request arrives after the close may see a connection reset instead of the 503; that
write may itself block up to the socket timeout if the client never reads (the kernel's send
buffer makes this unlikely for a ~100-byte answer). Health is judged on the host's monotonic
clock in the server thread, not on the loop's injected clock (a probe asks "is the loop alive
in real time").
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

STALE_TICKS = 3
"""``/healthz`` fails once the last completed tick is older than this many intervals."""


class Health:
    """Liveness and readiness of the control loop, written by the loop, read by the server.

    Live: the last completed tick (or the start, before the first) is younger than
    ``STALE_TICKS`` intervals. Ready: one tick completed and every expected pool has had a
    fresh observation (its queue was sampled at least once)."""

    def __init__(self, interval_s: float = 1.0, pools: tuple[str, ...] = ()) -> None:
        self.interval_s = interval_s
        self.pools = frozenset(pools)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_tick: float | None = None
        self._ticks = 0
        self._sampled: set[str] = set()

    def configure(self, interval_s: float, pools: tuple[str, ...]) -> None:
        with self._lock:
            self.interval_s = interval_s
            self.pools = frozenset(pools)

    def sampled(self, pool: str) -> None:
        with self._lock:
            self._sampled.add(pool)

    def ticked(self) -> None:
        with self._lock:
            self._last_tick = time.monotonic()
            self._ticks += 1

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            since = self._last_tick if self._last_tick is not None else self._started
            age = time.monotonic() - since
            limit = STALE_TICKS * self.interval_s
            ticks = self._ticks
        body = {"last_tick_age_s": round(age, 3), "max_age_s": limit, "ticks": ticks}
        return age < limit, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            missing = sorted(self.pools - self._sampled)
            ticks = self._ticks
        return ticks > 0 and not missing, {"ticks": ticks, "pools_not_sampled": missing}


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive slot hogging

    def setup(self) -> None:
        super().setup()
        probe = self.server.is_probe_connection(self.connection)
        self.probe_only = probe
        # an idle client is dropped; one in a probe slot much sooner
        self.connection.settimeout(self.server.probe_timeout_s if probe else self.server.timeout_s)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.probe_only and path not in ("/healthz", "/readyz"):
            self._send(503, "text/plain; charset=utf-8", b"busy: health probes only\n")
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path in ("/healthz", "/readyz"):
            health = self.server.health
            ok, body = health.liveness() if path == "/healthz" else health.readiness()
            body = {"status": "ok" if ok else "fail", **body}
            self._send(200 if ok else 503, "application/json",
                       json.dumps(body, sort_keys=True).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # access logs would be one line per scrape


class MetricsServer(ThreadingHTTPServer):
    """A threaded HTTP server with a socket timeout and a cap on concurrent connections."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: kernel memory, not threads

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: Health, *,
        timeout_s: float = 5.0, max_connections: int = 16, probe_slots: int = 4,
        probe_timeout_s: float = 0.5,
    ) -> None:
        self.registry = registry
        self.health = health
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.probe_timeout_s = probe_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self._probe_slots = threading.BoundedSemaphore(probe_slots) if probe_slots else None
        self._probe_connections: set[int] = set()
        """``id`` of the sockets being served in a probe slot."""
        self.rejected = 0
        """Connections answered 503 because ``max_connections`` were being served."""
        self.active = 0
        """Connections being served now (each holds a thread)."""
        self._count = threading.Lock()
        super().__init__((host, port), _Handler)

    def is_probe_connection(self, request: Any) -> bool:
        with self._count:
            return id(request) in self._probe_connections

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            probe = False
        elif self._probe_slots is not None and self._probe_slots.acquire(blocking=False):
            probe = True
        else:
            self.rejected += 1
            self._refuse(request)
            return
        with self._count:
            self.active += 1
            if probe:
                self._probe_connections.add(id(request))
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: Any) -> None:
        with self._count:
            self.active -= 1
            probe = id(request) in self._probe_connections
            self._probe_connections.discard(id(request))
        if probe:
            assert self._probe_slots is not None
            self._probe_slots.release()
        else:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(self.timeout_s)
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


def serve(
    host: str, port: int, registry: CollectorRegistry, health: Health, *,
    timeout_s: float = 5.0, max_connections: int = 16, probe_slots: int = 4,
    probe_timeout_s: float = 0.5,
) -> tuple[MetricsServer, threading.Thread]:
    """Bind and serve in a daemon thread (``port=0``: any free port, see ``server_port``)."""
    server = MetricsServer(host, port, registry, health, timeout_s=timeout_s,
                           max_connections=max_connections, probe_slots=probe_slots,
                           probe_timeout_s=probe_timeout_s)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
