"""A small Kubernetes API server for tests: the published REST shapes of the scale subresource
(``/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}/scale``, GET and PATCH),
the workloads themselves (GET, for their selector) and pods (``/api/v1/namespaces/{ns}/pods``
with ``labelSelector``), on 127.0.0.1, answered to the real kubernetes-asyncio client.

It also plays the controllers: on every request, each workload's pods are reconciled with its
``spec.replicas`` on the test's clock: new pods are scheduled and not ready until
``boot_time_s`` has passed (or stay ``Unschedulable`` with a scheduler message while the
workload's capacity is 0), scale-in deletes not-ready pods first, then the newest (the
ReplicaSet's order), and deleted pods stay terminating while ``hold_terminating`` is set.
Errors are injected per request as real ``Status`` bodies (``fail_next``).

Leases (``/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]``): GET, POST (409
``AlreadyExists`` when it exists), PUT (409 ``Conflict`` unless the body's
``metadata.resourceVersion`` is the stored one: the compare-and-swap leader election relies
on) and DELETE; every write bumps the ``resourceVersion``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from autoscaler.ports.clock import ManualClock

UNSCHEDULABLE_MESSAGE = ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. "
                         "preemption: 0/3 nodes are available.")


@dataclass
class FakePod:
    name: str
    uid: str
    created: float
    scheduled_at: float | None
    boot_time_s: float
    deleting: bool = False

    def ready(self, now: float) -> bool:
        return self.scheduled_at is not None and now >= self.scheduled_at + self.boot_time_s


@dataclass
class Workload:
    namespace: str
    resource: str
    name: str
    replicas: int = 0
    boot_time_s: float = 30.0
    capacity: int | None = None
    """Pods that can be scheduled at once (None: unlimited; 0: a GPU stockout)."""
    pods: list[FakePod] = field(default_factory=list)
    patches: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.name}


class FakeKubeApi:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.hold_terminating = False
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[str, str]] = []
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.slow: dict[str, float] = {}
        self._stopping = asyncio.Event()
        """HTTP method -> seconds each such request is held before it is answered."""
        self._versions = itertools.count(100)
        self.auth_headers: list[str] = []
        self._ids = itertools.count(1)
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ test controls

    def add(self, namespace: str, resource: str, name: str, *, replicas: int = 0,
            boot_time_s: float = 30.0) -> Workload:
        w = Workload(namespace, resource, name, replicas, boot_time_s)
        self.workloads[(namespace, resource, name)] = w
        self._reconcile(w)
        return w

    def fail_next(self, status: int, count: int = 1, headers: dict[str, str] | None = None
                  ) -> None:
        self.failures.extend([(status, headers or {})] * count)

    def live(self, w: Workload) -> list[FakePod]:
        return [p for p in w.pods if not p.deleting]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ controllers

    def reconcile_all(self) -> None:
        for w in self.workloads.values():
            self._reconcile(w)

    def _reconcile(self, w: Workload) -> None:
        now = self.clock.monotonic()
        if not self.hold_terminating:
            w.pods = [p for p in w.pods if not p.deleting]
        live = self.live(w)
        for _ in range(w.replicas - len(live)):
            n = next(self._ids)
            w.pods.append(FakePod(f"{w.name}-{n:05d}", f"uid-{n}", now, None, w.boot_time_s))
        live = self.live(w)
        excess = len(live) - w.replicas
        if excess > 0:  # ReplicaSet order: unscheduled, then not ready, then newest
            ranked = sorted(live, key=lambda p: (p.scheduled_at is not None, p.ready(now),
                                                 -p.created, -int(p.uid.split("-")[1])))
            for p in ranked[:excess]:
                p.deleting = True
            if not self.hold_terminating:
                w.pods = [p for p in w.pods if not p.deleting]
        scheduled = sum(1 for p in self.live(w) if p.scheduled_at is not None)
        for p in self.live(w):
            if p.scheduled_at is None and (w.capacity is None or scheduled < w.capacity):
                p.scheduled_at = now
                scheduled += 1

    # ------------------------------------------------------------------ REST

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        self.auth_headers.append(request.headers.get("Authorization", ""))
        if request.method in self.slow:  # held, but released at once by ``stop``
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.slow[request.method])
        if self.failures:
            status, headers = self.failures.pop(0)
            return _status(status, f"injected {status}", headers)
        self.reconcile_all()
        parts = request.path.strip("/").split("/")
        if parts[:4] == ["apis", "coordination.k8s.io", "v1", "namespaces"] and len(parts) in (
                6, 7) and parts[5] == "leases":
            return await self._lease(request, parts[4], parts[6] if len(parts) == 7 else None)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
            return self._pods(parts[3], request.query.get("labelSelector", ""))
        if parts[:4] == ["apis", "apps", "v1", "namespaces"] and len(parts) in (7, 8):
            w = self.workloads.get((parts[4], parts[5], parts[6]))
            if w is None:
                return _status(404, f'{parts[5]}.apps "{parts[6]}" not found')
            if len(parts) == 7 and request.method == "GET":
                return _json(self._workload(w))
            if parts[7] == "scale" and request.method == "GET":
                return _json(self._scale(w))
            if parts[7] == "scale" and request.method == "PATCH":
                if "merge-patch" not in request.content_type:
                    return _status(415, f"unsupported media type {request.content_type}")
                body = json.loads(await request.text())
                replicas = body.get("spec", {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    return _status(422, "spec.replicas: Invalid value")
                w.replicas = replicas
                w.patches += 1
                self._reconcile(w)
                return _json(self._scale(w))
        return _status(404, "the server could not find the requested resource")

    async def _lease(self, request: web.Request, namespace: str, name: str | None
                     ) -> web.Response:
        if request.method == "POST" and name is None:
            body = json.loads(await request.text())
            name = str(body.get("metadata", {}).get("name", ""))
            if (namespace, name) in self.leases:
                return _status(409, f'leases.coordination.k8s.io "{name}" already exists',
                               reason="AlreadyExists")
            return _json(self._store_lease(namespace, name, body), status=201)
        if name is None:
            return _status(405, "method not allowed")
        stored = self.leases.get((namespace, name))
        if stored is None and request.method != "POST":
            return _status(404, f'leases.coordination.k8s.io "{name}" not found')
        assert stored is not None
        if request.method == "GET":
            return _json(stored)
        if request.method == "PUT":
            body = json.loads(await request.text())
            sent = body.get("metadata", {}).get("resourceVersion")
            if sent != stored["metadata"]["resourceVersion"]:
                return _status(409, f'Operation cannot be fulfilled on leases.coordination.k8s.io'
                                    f' "{name}": the object has been modified; please apply your'
                                    f' changes to the latest version and try again')
            return _json(self._store_lease(namespace, name, body))
        if request.method == "DELETE":
            del self.leases[(namespace, name)]
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return _status(405, "method not allowed")

    def _store_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        metadata = {**body.get("metadata", {}), "name": name, "namespace": namespace,
                    "resourceVersion": str(next(self._versions)), "uid": f"lease-{name}"}
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": metadata, "spec": dict(body.get("spec", {}))}
        self.leases[(namespace, name)] = lease
        return lease

    def _scale(self, w: Workload) -> dict[str, Any]:
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": w.name, "namespace": w.namespace, "resourceVersion": "1"},
            "spec": {"replicas": w.replicas},
            "status": {"replicas": len(self.live(w)),
                       "selector": ",".join(f"{k}={v}" for k, v in w.labels.items())},
        }

    def _workload(self, w: Workload) -> dict[str, Any]:
        kind = "Deployment" if w.resource == "deployments" else "StatefulSet"
        return {"kind": kind, "apiVersion": "apps/v1",
                "metadata": {"name": w.name, "namespace": w.namespace},
                "spec": {"replicas": w.replicas, "selector": {"matchLabels": w.labels}}}

    def _pods(self, namespace: str, selector: str) -> web.Response:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
        now = self.clock.monotonic()
        items = []
        for w in self.workloads.values():
            if w.namespace != namespace or not wanted or any(
                    w.labels.get(k) != v for k, v in wanted.items()):
                continue
            items.extend(self._pod(w, p, now) for p in w.pods)
        return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    def _pod(self, w: Workload, p: FakePod, now: float) -> dict[str, Any]:
        stamp = "2026-12-01T12:00:00Z"
        meta: dict[str, Any] = {"name": p.name, "namespace": w.namespace, "uid": p.uid,
                                "labels": w.labels, "creationTimestamp": stamp}
        if p.deleting:
            meta["deletionTimestamp"] = stamp
        if p.scheduled_at is None:
            conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": UNSCHEDULABLE_MESSAGE, "lastTransitionTime": stamp}]
            phase = "Pending"
        else:
            ready = "True" if p.ready(now) else "False"
            conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                          {"type": "ContainersReady", "status": ready,
                           "lastTransitionTime": stamp},
                          {"type": "Ready", "status": ready, "lastTransitionTime": stamp}]
            phase = "Running" if p.ready(now) else "Pending"
        return {"metadata": meta, "spec": {"containers": [{"name": "server", "image": "vllm"}]},
                "status": {"phase": phase, "conditions": conditions}}


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


_REASONS = {403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
            415: "UnsupportedMediaType",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


def _status(code: int, message: str, headers: dict[str, str] | None = None, *,
            reason: str | None = None) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or _REASONS.get(code, "Unknown"), "code": code}
    return web.json_response(body, status=code, headers=headers)


def kubeconfig(url: str, token: str, context: str = "test") -> str:
    """A kubeconfig (YAML is a superset of JSON) for the fake, with a bearer token user."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
    })
