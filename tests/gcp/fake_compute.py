"""A local fake of the Compute Engine v1 REST API, for the MIG calls the ``gcp`` provider makes.

Standard library only (``http.server`` in a thread, bound to 127.0.0.1 on a free port). It
follows the published shapes of ``instanceGroupManagers`` / ``regionInstanceGroupManagers``
``get``, ``resize`` (``size`` and ``requestId`` query parameters; a ``requestId`` seen before
returns the first operation and changes nothing), ``listManagedInstances``, and
``zoneOperations``/``regionOperations`` ``get``/``wait``; errors are Google's JSON error body
(``error.code``, ``error.message``, ``error.errors[].reason``).

The fleet moves on a ``ManualClock`` the test owns: a new instance is ``CREATING`` (with an
``instanceStatus`` once its VM exists) for ``boot_s``, then ``NONE``/``RUNNING``; a stockout
leaves new instances ``CREATING`` with no VM and a ``lastAttempt`` error until it ends; scale-in
removes instances that do not run yet first, then the newest (the MIG's choice, not the
product's), which stay ``DELETING`` for ``drain_s``. A resize operation answers ``RUNNING`` and
is ``DONE`` from its first ``get``/``wait`` (so the provider's polling is exercised).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from autoscaler.ports.clock import ManualClock

ROOT = "https://compute.googleapis.com/compute/v1"
PATH = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/(?P<scope>zones|regions)/(?P<loc>[^/]+)/"
    r"(?P<coll>instanceGroupManagers|operations)/(?P<name>[^/]+)"
    r"(?:/(?P<verb>resize|listManagedInstances|wait))?$")
SUMMARY = ("abandoning", "creating", "creatingWithoutRetries", "deleting", "none", "recreating",
           "refreshing", "restarting", "resuming", "starting", "stopping", "suspending",
           "verifying")
STOCKOUT = ("ZONE_RESOURCE_POOL_EXHAUSTED",
            "The zone does not have enough resources available to fulfill the request.")


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops the SYNs of concurrent describes past it, which
    # then wait a TCP retransmit (1 s): a fake's artifact, not the provider's.
    request_queue_size = 128
    daemon_threads = True


@dataclass
class Instance:
    name: str
    launched_at: float | None  # None: no VM yet (launches failing)
    deleting_until: float | None = None


@dataclass
class Mig:
    project: str
    location: str  # zones/ZONE or regions/REGION
    name: str
    target_size: int = 0
    instances: list[Instance] = field(default_factory=list)
    failing: tuple[str, str] | None = None
    resize_error: tuple[str, str] | None = None  # resize operations end DONE with this error


@dataclass(frozen=True)
class Injected:
    verb: str  # get, resize, listManagedInstances, wait, operation
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    after: bool = False  # carry the call out, then answer the error (a lost response)
    mig: str | None = None  # only calls on this MIG (None: any)


class FakeCompute:
    """The fake's state and its HTTP server; ``endpoint`` is what the account names."""

    def __init__(self, clock: ManualClock, *, boot_s: float = 30.0, drain_s: float = 0.0,
                 token: str | None = None) -> None:
        self.clock = clock
        self.boot_s = boot_s
        self.drain_s = drain_s
        self.hold_drains = False
        # When set: requests must carry a bearer credential (this token from ``/token``, or
        # the self-signed JWT google-auth makes from a service-account key); each seen is kept.
        self.token = token
        self.authorizations: list[str] = []
        self.migs: dict[tuple[str, str, str], Mig] = {}
        self.operations: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.by_request_id: dict[str, str] = {}
        self.applied: list[tuple[str, int, str]] = []  # (mig, size, requestId) per change
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.injected: list[Injected] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeCompute:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ test controls

    def add_mig(self, name: str, *, zone: str | None = "us-central1-a",
                region: str | None = None, project: str = "proj-test") -> Mig:
        location = f"regions/{region}" if region else f"zones/{zone}"
        mig = Mig(project, location, name)
        self.migs[(project, location, name)] = mig
        return mig

    def mig(self, name: str) -> Mig:
        [found] = [m for m in self.migs.values() if m.name == name]
        return found

    def set_failing(self, name: str, failing: bool,
                    error: tuple[str, str] = STOCKOUT) -> None:
        with self.lock:
            mig = self.mig(name)
            mig.failing = error if failing else None
            if not failing:
                for inst in mig.instances:
                    if inst.launched_at is None:
                        inst.launched_at = self.clock.monotonic()

    def release_drains(self) -> None:
        with self.lock:
            self.hold_drains = False
            now = self.clock.monotonic()
            for mig in self.migs.values():
                for inst in mig.instances:
                    if inst.deleting_until is not None:
                        inst.deleting_until = now

    def inject(self, verb: str, status: int, reason: str, count: int = 1,
               headers: tuple[tuple[str, str], ...] = (), *, after: bool = False,
               mig: str | None = None) -> None:
        """The next ``count`` calls of ``verb`` answer with this HTTP error (``after``: the
        call is carried out first, as when a response is lost on its way back)."""
        with self.lock:
            self.injected.extend([Injected(verb, status, reason, headers, after, mig)] * count)

    def live(self, name: str) -> list[Instance]:
        with self.lock:
            mig = self.mig(name)
            self._reconcile(mig)
            return [i for i in mig.instances if i.deleting_until is None]

    def calls(self, verb: str) -> list[dict[str, list[str]]]:
        return [q for method, v, q in self.requests if v == verb]

    # ------------------------------------------------------------------ the fleet

    def _reconcile(self, mig: Mig) -> None:
        now = self.clock.monotonic()
        mig.instances = [i for i in mig.instances if i.deleting_until is None
                         or (self.hold_drains or now < i.deleting_until)]

    def _resize(self, mig: Mig, size: int) -> None:
        now = self.clock.monotonic()
        live = [i for i in mig.instances if i.deleting_until is None]
        for _ in range(size - len(live)):
            launched = None if mig.failing else now
            mig.instances.append(Instance(f"{mig.name}-{next(self._ids):04d}", launched))
        excess = len(live) - size
        if excess > 0:
            def running_newest(i: Instance) -> tuple[bool, float]:
                up = i.launched_at is not None and now >= i.launched_at + self.boot_s
                return (up, -(i.launched_at if i.launched_at is not None else float("inf")))
            for victim in sorted(live, key=running_newest)[:excess]:
                victim.deleting_until = float("inf") if self.hold_drains else now + self.drain_s
        mig.target_size = size

    def _member(self, mig: Mig, inst: Instance) -> dict[str, Any]:
        now = self.clock.monotonic()
        zone = mig.location.split("/")[1] if mig.location.startswith("zones/") else (
            mig.location.split("/")[1] + "-b")
        body: dict[str, Any] = {
            "instance": f"{ROOT}/projects/{mig.project}/zones/{zone}/instances/{inst.name}",
            "name": inst.name,
        }
        if inst.deleting_until is not None:
            body.update(currentAction="DELETING", instanceStatus="STOPPING")
        elif inst.launched_at is None:
            code, message = mig.failing or STOCKOUT
            body.update(currentAction="CREATING", lastAttempt={
                "errors": {"errors": [{"code": code, "message": message}]}})
        elif now < inst.launched_at + self.boot_s:
            body.update(currentAction="CREATING", instanceStatus="PROVISIONING")
        else:
            body.update(currentAction="NONE", instanceStatus="RUNNING")
        return body

    def _mig_body(self, mig: Mig) -> dict[str, Any]:
        counts = dict.fromkeys(SUMMARY, 0)
        for inst in mig.instances:
            action = self._member(mig, inst)["currentAction"]
            counts[{"NONE": "none", "CREATING": "creating", "DELETING": "deleting"}[action]] += 1
        scope = mig.location.split("/")[0][:-1]
        return {
            "kind": "compute#instanceGroupManager", "name": mig.name,
            "id": str(abs(hash(mig.name)) % 10**12),
            scope: f"{ROOT}/projects/{mig.project}/{mig.location}",
            "targetSize": mig.target_size, "currentActions": counts,
            "status": {"isStable": counts["none"] == len(mig.instances)},
            "selfLink": f"{ROOT}/projects/{mig.project}/{mig.location}/instanceGroupManagers/"
                        f"{mig.name}",
        }

    # ------------------------------------------------------------------ HTTP

    def _handle(self, method: str, path: str, query: dict[str, list[str]],
                headers: Any) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
        if path == "/token" and self.token is not None:  # an OAuth2 token endpoint
            self.requests.append((method, "token", query))
            return 200, {"access_token": self.token, "expires_in": 3600,
                         "token_type": "Bearer"}, ()
        m = PATH.match(path)
        if m is None:
            return 404, error(404, "notFound", f"no route {path}"), ()
        coll, verb = m["coll"], m["verb"]
        kind = verb or ("get" if coll == "instanceGroupManagers" else "operation")
        self.requests.append((method, kind, query))
        authorization = headers.get("Authorization") or ""
        if self.token is not None and authorization.startswith("Bearer ") and len(
                authorization) > len("Bearer "):
            self.authorizations.append(authorization.removeprefix("Bearer "))
        elif self.token is not None:
            return 401, error(401, "required", "Request is missing required authentication "
                                                "credential."), ()
        for i, inj in enumerate(self.injected):
            if inj.verb == kind and inj.mig in (None, m["name"]):
                del self.injected[i]
                if inj.after:
                    self._route(m, kind, query)
                return inj.status, error(inj.status, inj.reason, f"injected {inj.reason}"), \
                    inj.headers
        return self._route(m, kind, query)

    def _route(self, m: re.Match[str], kind: str, query: dict[str, list[str]],
               ) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
        coll = m["coll"]
        location = f"{m['scope']}/{m['loc']}"
        if coll == "operations":
            op = self.operations.get((m["project"], location, m["name"]))
            if op is None:
                return 404, error(404, "notFound", f"The resource operation {m['name']!r} "
                                                   "was not found"), ()
            op.update(status="DONE", progress=100)
            return 200, op, ()
        mig = self.migs.get((m["project"], location, m["name"]))
        if mig is None:
            return 404, error(404, "notFound", f"The resource 'projects/{m['project']}/"
                              f"{location}/instanceGroupManagers/{m['name']}' was not found"), ()
        self._reconcile(mig)
        if kind == "get":
            return 200, self._mig_body(mig), ()
        if kind == "listManagedInstances":
            return 200, {"managedInstances": [self._member(mig, i) for i in mig.instances]}, ()
        return self._resize_call(mig, query)

    def _resize_call(self, mig: Mig, query: dict[str, list[str]],
                     ) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
        try:
            size = int(query["size"][0])
            request_id = query.get("requestId", [""])[0]
            if request_id:
                uuid.UUID(request_id)
        except (KeyError, ValueError):
            return 400, error(400, "invalid", "Invalid value for size or requestId"), ()
        if size < 0:
            return 400, error(400, "invalid", "Invalid value for field 'size'"), ()
        if request_id and request_id in self.by_request_id:
            name = self.by_request_id[request_id]
            return 200, self.operations[(mig.project, mig.location, name)], ()
        if mig.resize_error is None:
            self._resize(mig, size)
            self.applied.append((mig.name, size, request_id))
        name = f"operation-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        scope = mig.location.split("/")[0][:-1]
        op = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": name,
            "operationType": "compute.instanceGroupManagers.resize", "status": "RUNNING",
            "progress": 0, "targetLink": self._mig_body(mig)["selfLink"],
            scope: f"{ROOT}/projects/{mig.project}/{mig.location}",
            "selfLink": f"{ROOT}/projects/{mig.project}/{mig.location}/operations/{name}",
        }
        if mig.resize_error is not None:
            code, message = mig.resize_error
            op.update(status="DONE", progress=100, httpErrorStatusCode=403,
                      error={"errors": [{"code": code, "message": message}]})
        self.operations[(mig.project, mig.location, name)] = op
        if request_id:
            self.by_request_id[request_id] = name
        return 200, op, ()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                url = urlsplit(self.path)
                with fake.lock:
                    status, body, extra = fake._handle(
                        self.command, url.path, parse_qs(url.query), self.headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


def error(code: int, reason: str, message: str) -> dict[str, Any]:
    """Google's JSON error body."""
    domain = "usageLimits" if reason.endswith("LimitExceeded") else "global"
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": domain, "reason": reason}]}}
