"""``kubernetes``: a group is a Deployment or a StatefulSet, resized through its scale
subresource (``apps/v1 .../scale``) with kubernetes-asyncio (the optional extra ``kubernetes``).

Account (``providers: {k8s: {kind: kubernetes, kubeconfig: ..., context: ...}}``): a
``kubeconfig`` file and a ``context`` in it; with neither, the client's default chain: the
in-cluster service account when ``KUBERNETES_SERVICE_HOST`` is set (a daemon running as a pod),
else ``$KUBECONFIG`` or ``~/.kube/config`` with its current context.

Group: ``namespace`` plus exactly one of ``deployment`` or ``statefulset``; optional
``pending_timeout`` (default 5m). What the group's ``GroupState`` means here
(``providers/kubernetes/pods.py`` has the rules): ``desired`` is ``spec.replicas`` of the scale
subresource; pods are listed by the workload's selector (``status.selector`` of the same
subresource); terminating pods are *draining*, ready pods *running*, scheduled but not ready
pods *booting*, unschedulable pods and replicas without a pod *pending*. A pod unschedulable
for ``pending_timeout`` (the scheduler found no node: no GPU free, a taint, quota) makes the
group unavailable with the scheduler's message, so the allocator moves the shortfall to the
next group; Kubernetes itself never refuses the new replica count.

Not guaranteed: Kubernetes (the ReplicaSet controller, or the StatefulSet's ordinal order)
chooses scale-in victims, not this adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup
from autoscaler.providers.kubernetes.settings import (
    DEFAULT_PENDING_TIMEOUT_S,
    EXTRA,
    KubernetesAccountSettings,
    KubernetesGroupSettings,
    sdk_missing,
)

if TYPE_CHECKING:
    from autoscaler.providers.kubernetes.client import KubernetesClient

__all__ = [
    "DEFAULT_PENDING_TIMEOUT_S",
    "EXTRA",
    "KubernetesAccountSettings",
    "KubernetesGroupSettings",
    "KubernetesProvider",
    "sdk_missing",
]


class KubernetesProvider:
    """The ``kubernetes`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "kubernetes"
    AccountSettings: ClassVar[type[BaseModel]] = KubernetesAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = KubernetesGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        if not isinstance(group.settings, KubernetesGroupSettings):
            return [("", "kubernetes provider settings expected")]
        missing = sdk_missing()
        return [("", missing)] if missing else []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> KubernetesClient:
        # The SDK is imported when the client starts, not here: building the daemon stays
        # fast; a missing extra refuses the build (`run` exits 2) naming the extra.
        missing = sdk_missing()
        if missing:
            raise ValueError(missing)
        from autoscaler.providers.kubernetes.client import KubernetesClient

        return KubernetesClient(account, groups, clock)
