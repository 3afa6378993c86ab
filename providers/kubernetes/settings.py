"""The settings of the ``kubernetes`` kind: an account (a cluster) and a group (a workload).

Kept apart from the kind (``__init__``) so the client module can import them without an
import cycle through the package."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.config.durations import Duration
from autoscaler.ports.provider import missing_extra

DEFAULT_PENDING_TIMEOUT_S = 300.0
EXTRA = "kubernetes"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def sdk_missing() -> str | None:
    """Why the SDK cannot be used (the extra to install), or None. Looks it up without
    importing it (a slow import), so `validate` refuses what `run` would refuse, cheaply."""
    return missing_extra("the kubernetes provider", EXTRA, ("kubernetes_asyncio",))


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
