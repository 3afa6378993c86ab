"""The account client of the ``kubernetes`` kind: one ``ApiClient`` per cluster, shared by
every group of every pool on that account.

Calls per describe: for each group, one GET of the scale subresource and one pod list by the
selector that subresource reports; groups are described concurrently (at most
``MAX_CONCURRENT_CALLS`` requests in flight per cluster). Kubernetes has no batched read across
workloads, so "batched" here means one client call of the daemon, not one HTTP request.

Resize is one merge PATCH of ``spec.replicas`` on the scale subresource, with
``fieldManager=queue-autoscaler``: absolute, so repeating it is harmless (idempotent), and it
returns as soon as the API server stored it. The kubernetes-asyncio client has no retries of
its own; the daemon's actuator retries by error class.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import Denied, NotFound, ProviderError
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.kubernetes.errors import map_error
from autoscaler.providers.kubernetes.pods import PodView, UnschedulableTracker, count_pods
from autoscaler.providers.kubernetes.settings import (
    EXTRA,
    KubernetesAccountSettings,
    KubernetesGroupSettings,
)

MAX_CONCURRENT_CALLS = 8
FIELD_MANAGER = "queue-autoscaler"

log = structlog.get_logger("autoscaler.providers.kubernetes")


@dataclass(eq=False)
class _Group:
    id: GroupId
    market: Market
    settings: KubernetesGroupSettings
    tracker: UnschedulableTracker = field(default_factory=UnschedulableTracker)


def pod_view(pod: Any) -> PodView:
    """The counting rules' view of a kubernetes-asyncio ``V1Pod``."""
    meta, status = pod.metadata, pod.status
    conditions = (status.conditions if status is not None else None) or []
    ready = False
    unschedulable: str | None = None
    for cond in conditions:
        if cond.type == "Ready" and cond.status == "True":
            ready = True
        elif (cond.type == "PodScheduled" and cond.status == "False"
              and cond.reason == "Unschedulable"):
            unschedulable = cond.message or "unschedulable"
    return PodView(
        uid=str(meta.uid or meta.name), name=str(meta.name or ""),
        phase=str((status.phase if status is not None else None) or "Pending"),
        deleting=meta.deletion_timestamp is not None, ready=ready, unschedulable=unschedulable,
    )


class KubernetesClient:
    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        if not isinstance(account.settings, KubernetesAccountSettings):
            raise TypeError("kubernetes account settings expected")
        self.account = account.name
        self._spec = account
        self._settings = account.settings
        self._clock = clock
        self._groups: dict[GroupId, _Group] = {}
        for g in groups:
            if not isinstance(g.settings, KubernetesGroupSettings):
                raise TypeError(f"group {g.id}: kubernetes group settings expected")
            self._groups[g.id] = _Group(g.id, g.market, g.settings)
        self._api: Any = None
        self._apps: Any = None
        self._core: Any = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the credentials (kubeconfig or in-cluster) and open the HTTP session. No API
        call is made here: an unreachable API server shows up in the first describe."""
        try:
            from kubernetes_asyncio import client as k8s
            from kubernetes_asyncio import config as k8s_config
        except ImportError as exc:
            raise ProviderError(f"the kubernetes provider needs kubernetes-asyncio: pip "
                                f"install 'queue-autoscaler[{EXTRA}]'", account=self.account,
                                operation="start") from exc
        configuration = k8s.Configuration()
        s = self._settings
        try:
            if s.kubeconfig is None and s.context is None and os.environ.get(
                    "KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration)
                source = "in-cluster"
            else:
                await k8s_config.load_kube_config(
                    config_file=s.kubeconfig, context=s.context,
                    client_configuration=configuration)
                source = s.kubeconfig or "default kubeconfig"
        except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
            # The SDK's messages name files and contexts, never the token or key itself.
            raise Denied(f"cannot load cluster credentials: {type(exc).__name__}: {exc}",
                         account=self.account, operation="start") from exc
        self._api = k8s.ApiClient(configuration=configuration)
        self._apps = k8s.AppsV1Api(self._api)
        self._core = k8s.CoreV1Api(self._api)
        log.info("kubernetes_connected", account=self.account, credentials=source,
                 context=s.context, groups=len(self._groups))

    async def close(self, drain_timeout_s: float) -> None:
        """Close the HTTP session; the workloads keep running as they are."""
        if self._api is not None:
            api, self._api = self._api, None
            await api.close()

    # ------------------------------------------------------------------ calls

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        results = await asyncio.gather(*(self._describe_one(g) for g in groups))
        return dict(zip(groups, results, strict=True))

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        g = self._group(group, "resize")
        if target < 0:
            raise ValueError(f"group {group}: target must be >= 0, got {target}")
        s = g.settings
        patch = (self._apps.patch_namespaced_deployment_scale if s.deployment is not None
                 else self._apps.patch_namespaced_stateful_set_scale)
        try:
            async with self._limit:
                await patch(s.workload, s.namespace, {"spec": {"replicas": target}},
                            field_manager=FIELD_MANAGER,
                            _request_timeout=self._spec.resize_timeout_s)
        except Exception as exc:
            raise map_error(exc, account=self.account, group=str(group),
                            operation="resize") from exc
        log.info("kubernetes_scaled", account=self.account, group=str(group),
                 workload=str(s), replicas=target, request_id=request_id)

    # ------------------------------------------------------------------ internals

    def _group(self, gid: GroupId, operation: str) -> _Group:
        group = self._groups.get(gid)
        if group is None:
            raise NotFound("no such kubernetes group in this account's config",
                           account=self.account, group=str(gid), operation=operation)
        if self._apps is None:
            raise ProviderError("client not started", account=self.account, group=str(gid),
                                operation=operation)
        return group

    async def _describe_one(self, gid: GroupId) -> GroupState | ProviderError:
        try:
            g = self._group(gid, "describe")
        except ProviderError as exc:
            return exc
        s = g.settings
        read = (self._apps.read_namespaced_deployment_scale if s.deployment is not None
                else self._apps.read_namespaced_stateful_set_scale)
        timeout = self._spec.describe_timeout_s
        try:
            async with self._limit:
                scale = await read(s.workload, s.namespace, _request_timeout=timeout)
            selector = scale.status.selector if scale.status is not None else None
            pods: list[Any] = []
            if selector:
                async with self._limit:
                    listed = await self._core.list_namespaced_pod(
                        s.namespace, label_selector=selector, _request_timeout=timeout)
                pods = list(listed.items or [])
        except Exception as exc:
            return map_error(exc, account=self.account, group=str(gid), operation="describe")
        desired = int((scale.spec.replicas if scale.spec is not None else 0) or 0)
        counts = count_pods(pod_view(p) for p in pods)
        stuck = g.tracker.overdue(counts.unschedulable, self._clock.monotonic(),
                                  s.pending_timeout)
        reason = ""
        if stuck is not None:
            reason = (f"{len(counts.unschedulable)} pod(s) of {s} unschedulable for at least "
                      f"{s.pending_timeout:g}s (e.g. {stuck.name}): {stuck.unschedulable}")
        return GroupState(
            name=gid.group, market=g.market, desired=desired, booting=counts.booting,
            running=counts.running, draining=counts.draining,
            pending=counts.pending(desired), available=stuck is None, reason=reason,
        )
