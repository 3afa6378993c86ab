"""A Kubernetes ``coordination.k8s.io/v1`` Lease as the leader-election backend.

The same contract as ``RedisLease`` (``autoscaler.runtime.leader``), so ``LeaderGate`` runs it
unchanged. Every write is a compare-and-swap on ``metadata.resourceVersion`` (a PUT that the
API server refuses with 409 Conflict when another replica wrote first); the fencing token is
``spec.leaseTransitions`` after this replica's acquisition, which every change of holder
increments and which a release keeps (the Lease is emptied, never deleted, so the counter never
starts over).

Expiry follows client-go's leaderelection: a replica does not compare the holder's
``renewTime`` with its own wall clock (hosts' clocks differ); it notes when it *observed* the
Lease's current ``resourceVersion`` and takes the Lease as expired once that version has not
changed for ``leaseDurationSeconds`` of its own monotonic clock. A holder renews every
``ttl / 3``, so its Lease's version moves long before that. A released Lease (no
``holderIdentity``) is free at once.

What is not guaranteed: as with Redis, the workloads do not check the token, so a resize that
passed ``confirm`` just before the Lease changed hands can still land. ``leaseDurationSeconds``
is a whole number of seconds (the ttl is rounded up).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger("autoscaler.runtime")


def _now() -> str:
    """A ``MicroTime``: RFC 3339 with microseconds, in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseUnavailable(RuntimeError):
    """The Kubernetes client could not be set up (extra missing, credentials unreadable)."""


class LeaseApiError(RuntimeError):
    """A Lease call failed: the HTTP status and the ``Status.message`` only (the SDK's own
    text lists every response header)."""

    def __init__(self, operation: str, exc: Any) -> None:
        body = getattr(exc, "body", None)
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        message = ""
        if isinstance(body, str):
            try:
                data = json.loads(body)
                message = str(data.get("message", ""))[:300] if isinstance(data, dict) else ""
            except ValueError:
                message = body[:200]
        super().__init__(f"{operation} lease: HTTP {getattr(exc, 'status', '?')} {message}")


class KubernetesLease:
    """The lease primitives on one Lease object (see the module docstring)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        ttl_s: float,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.namespace = namespace
        self.name = name
        self.duration_s = max(1, math.ceil(ttl_s))
        self.ttl_ms = self.duration_s * 1000
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.token: str | None = None
        self._kubeconfig = kubeconfig
        self._context = context
        self._monotonic = monotonic
        self._api: Any = None
        self._coordination: Any = None
        self._observed: tuple[str, float] | None = None
        """(resourceVersion, when this replica first saw it) of the Lease as last read."""
        self._version: str | None = None
        """Our Lease's resourceVersion after our last write (the CAS base of a renewal)."""

    @property
    def location(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    @property
    def fence(self) -> int | None:
        return None if self.token is None else int(self.token.rpartition(":")[2])

    # ------------------------------------------------------------------ the API

    async def _client(self) -> Any:
        if self._coordination is not None:
            return self._coordination
        try:
            from kubernetes_asyncio import client as k8s
            from kubernetes_asyncio import config as k8s_config
        except ImportError as exc:
            raise LeaseUnavailable("leader_election backend kubernetes needs kubernetes-asyncio:"
                                   " pip install 'queue-autoscaler[kubernetes]'") from exc
        configuration = k8s.Configuration()
        try:
            if self._kubeconfig is None and self._context is None and os.environ.get(
                    "KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration)
            else:
                await k8s_config.load_kube_config(
                    config_file=self._kubeconfig, context=self._context,
                    client_configuration=configuration)
        except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise LeaseUnavailable(f"cannot load cluster credentials: {type(exc).__name__}: "
                                   f"{exc}") from exc
        self._api = k8s.ApiClient(configuration=configuration)
        self._coordination = k8s.CoordinationV1Api(self._api)
        return self._coordination

    async def _read(self) -> Any | None:
        from kubernetes_asyncio.client.exceptions import ApiException

        api = await self._client()
        try:
            lease = await api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise LeaseApiError("read", exc) from None
        version = str(lease.metadata.resource_version)
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, self._monotonic())
        return lease

    def _body(self, transitions: int, version: str | None, *, acquired: str | None,
              holder: str | None, duration_s: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        now = _now()
        spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration_s,
                                "leaseTransitions": transitions, "renewTime": now}
        if acquired is not None:
            spec["acquireTime"] = acquired
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": metadata, "spec": spec}

    async def _write(self, body: dict[str, Any], *, create: bool) -> Any | None:
        """Create or CAS-replace; None when another replica wrote first (409)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        api = await self._client()
        try:
            if create:
                lease = await api.create_namespaced_lease(self.namespace, body)
            else:
                lease = await api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise LeaseApiError("create" if create else "replace", exc) from None
        self._version = str(lease.metadata.resource_version)
        self._observed = (self._version, self._monotonic())
        return lease

    def _expired(self, lease: Any) -> bool:
        spec = lease.spec
        if not spec.holder_identity:
            return True  # released
        duration = float(spec.lease_duration_seconds or self.duration_s)
        assert self._observed is not None  # set by _read
        elapsed: float = self._monotonic() - self._observed[1]
        return elapsed >= duration

    # ------------------------------------------------------------------ the contract

    async def acquire(self) -> bool:
        lease = await self._read()
        now = _now()
        if lease is None:
            written = await self._write(self._body(0, None, acquired=now, holder=self.holder,
                                                   duration_s=self.duration_s), create=True)
            self.token = None if written is None else f"{self.holder}:0"
            return self.token is not None
        spec = lease.spec
        transitions = int(spec.lease_transitions or 0)
        if spec.holder_identity == self.holder:  # ours already (a restart with our identity)
            fence = transitions
        elif self._expired(lease):
            fence = transitions + 1
        else:
            self.token = None
            return False
        written = await self._write(
            self._body(fence, str(lease.metadata.resource_version), acquired=now,
                       holder=self.holder, duration_s=self.duration_s), create=False)
        self.token = None if written is None else f"{self.holder}:{fence}"
        return self.token is not None

    async def renew(self) -> bool:
        """Extend the Lease if it still names this holder and term (one read, one CAS)."""
        if self.token is None:
            return False
        lease = await self._read()
        if lease is None or not self._ours(lease):
            self.token = None
            return False
        fence = self.fence
        assert fence is not None
        acquired = lease.spec.acquire_time
        written = await self._write(
            self._body(fence, str(lease.metadata.resource_version),
                       acquired=acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if acquired else None,
                       holder=self.holder, duration_s=self.duration_s), create=False)
        if written is None:
            self.token = None
        return self.token is not None

    def _ours(self, lease: Any) -> bool:
        spec = lease.spec
        return (spec.holder_identity == self.holder
                and int(spec.lease_transitions or 0) == self.fence)

    async def holds(self) -> bool:
        """Whether the Lease still names this holder and term (one GET: the fencing check)."""
        if self.token is None:
            return False
        lease = await self._read()
        if lease is None or not self._ours(lease):
            self.token = None
        return self.token is not None

    async def release(self) -> None:
        """Empty the Lease (kept, with its transition count) so a standby takes it at once."""
        token, self.token = self.token, None
        if token is None:
            return
        lease = await self._read()
        if lease is None or lease.spec.holder_identity != self.holder:
            return
        await self._write(
            self._body(int(lease.spec.lease_transitions or 0),
                       str(lease.metadata.resource_version), acquired=None, holder=None,
                       duration_s=1), create=False)

    async def close(self) -> None:
        api, self._api, self._coordination = self._api, None, None
        if api is not None:
            await api.close()

