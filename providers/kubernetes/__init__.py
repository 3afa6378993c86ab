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

import importlib.util
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.config.durations import Duration
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup

if TYPE_CHECKING:
    from autoscaler.providers.kubernetes.client import KubernetesClient

DEFAULT_PENDING_TIMEOUT_S = 300.0
EXTRA = "kubernetes"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def sdk_missing() -> str | None:
    """Why the SDK cannot be used (the extra to install), or None. Looks it up without
    importing it (~0.5 s), so `validate` refuses what `run` would refuse, cheaply."""
    if importlib.util.find_spec("kubernetes_asyncio") is None:
        return (f"the kubernetes provider needs kubernetes-asyncio: "
                f"pip install 'queue-autoscaler[{EXTRA}]'")
    return None


class KubernetesAccountSettings(BaseModel):
    """One cluster. Both keys optional: without them, in-cluster or the default kubeconfig."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kubeconfig: str | None = Field(default=None, min_length=1,
                                   description="path of a kubeconfig file")
    context: str | None = Field(default=None, min_length=1,
                                description="a context of the kubeconfig (default: current)")


class KubernetesGroupSettings(BaseModel):
    """The keys of a kubernetes group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1, max_length=63)
    deployment: str | None = Field(default=None, min_length=1, max_length=253)
    statefulset: str | None = Field(default=None, min_length=1, max_length=253)
    pending_timeout: Duration = Field(
        default=DEFAULT_PENDING_TIMEOUT_S, le=86400,
        description="how long a pod may stay unschedulable before the group is unavailable")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a namespace name (lower-case letters, digits, "
                             "'-', at most 63)")
        return value

    @field_validator("deployment", "statefulset")
    @classmethod
    def _workload(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a workload name (lower-case letters, digits, "
                             "'-', '.')")
        return value

    @model_validator(mode="after")
    def _one_workload(self) -> KubernetesGroupSettings:
        if (self.deployment is None) == (self.statefulset is None):
            raise ValueError("a kubernetes group names exactly one of `deployment` or "
                             "`statefulset`")
        return self

    @property
    def resource(self) -> str:
        """``deployments`` or ``statefulsets``: the API's plural, for logs and errors."""
        return "deployments" if self.deployment is not None else "statefulsets"

    @property
    def workload(self) -> str:
        name = self.deployment if self.deployment is not None else self.statefulset
        assert name is not None
        return name

    def __str__(self) -> str:
        return f"{self.namespace}/{self.resource}/{self.workload}"


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
