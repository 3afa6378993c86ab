"""``gcp``: Compute Engine managed instance groups (MIGs), zonal or regional.

The kind is light to import: it declares its settings and checks here, and the client
(``autoscaler.providers.gcp.client``) imports google-cloud-compute (slow to import) only
when the daemon builds it, so ``autoscaler validate`` and the simulator never pay for it and a
missing SDK is a clear error naming the ``gcp`` extra.

Account (one entry of ``providers:``): ``project``, optional ``credentials_file`` (any file
``google.auth.load_credentials_from_file`` reads: a service-account key, a workload identity
federation config, an authorized-user file) and ``endpoint`` (an API root override, e.g. a
private endpoint or a local fake). Without ``credentials_file`` the default chain of
``google.auth.default()`` is used (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application
default credentials, the metadata server / workload identity).

Group: ``mig`` plus exactly one of ``zone`` (a zonal MIG, ``instanceGroupManagers``) or
``region`` (a regional MIG, ``regionInstanceGroupManagers``). What each state means, what
counts as a capacity failure and how far ``resize`` waits are written in
``autoscaler.providers.gcp.state`` and ``autoscaler.providers.gcp.client``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup

if TYPE_CHECKING:
    from autoscaler.providers.gcp.client import GcpClient

# Compute Engine resource names (RFC 1035 labels) and location names.
NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
ZONE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"
REGION = r"^[a-z]+-[a-z]+[0-9]+$"
# Project ids, including legacy domain-scoped ones (``example.com:my-project``).
PROJECT = r"^([a-z0-9.-]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$"


EXTRA_HINT = "install the gcp extra: pip install 'queue-autoscaler[gcp]'"


def sdk_missing() -> bool:
    """True when google-cloud-compute is not installed (looked up, not imported: cheap)."""
    try:
        return importlib.util.find_spec("google.cloud.compute_v1") is None
    except ModuleNotFoundError:
        return True


class GcpAccountSettings(BaseModel):
    """The keys of a ``kind: gcp`` account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(pattern=PROJECT, description="the project that holds the MIGs")
    credentials_file: str | None = Field(
        default=None, min_length=1,
        description="a credentials JSON file (default: the google.auth default chain)")
    endpoint: HttpUrl | None = Field(
        default=None, description="Compute API root override (private endpoint, emulator)")


class GcpGroupSettings(BaseModel):
    """The keys of a group on a ``gcp`` account: ``mig`` and its ``zone`` or ``region``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mig: str = Field(pattern=NAME, description="the managed instance group's name")
    zone: str | None = Field(default=None, pattern=ZONE, description="a zonal MIG's zone")
    region: str | None = Field(default=None, pattern=REGION,
                               description="a regional MIG's region")

    @property
    def location(self) -> str:
        """``zones/ZONE`` or ``regions/REGION``: the MIG's place, unique with its name."""
        return f"zones/{self.zone}" if self.zone is not None else f"regions/{self.region}"


class GcpProvider:
    """The ``gcp`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "gcp"
    AccountSettings: ClassVar[type[BaseModel]] = GcpAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = GcpGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        settings = group.settings
        if not isinstance(settings, GcpGroupSettings):
            return [("", "gcp provider settings expected")]
        if sdk_missing():
            return [("", f"the gcp provider needs google-cloud-compute: {EXTRA_HINT}")]
        if (settings.zone is None) == (settings.region is None):
            return [("zone", "a gcp group needs exactly one of `zone` (a zonal MIG) or "
                             "`region` (a regional MIG)")]
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> GcpClient:
        from autoscaler.providers.gcp.client import GcpClient

        return GcpClient(account, groups, clock)
