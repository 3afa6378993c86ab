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

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup
from autoscaler.providers.gcp.settings import (
    GcpAccountSettings,
    GcpGroupSettings,
    check_group,
    sdk_missing,
)

if TYPE_CHECKING:
    from autoscaler.providers.gcp.client import GcpClient

__all__ = ["GcpAccountSettings", "GcpGroupSettings", "GcpProvider",
           "sdk_missing"]


class GcpProvider:
    """The ``gcp`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "gcp"
    AccountSettings: ClassVar[type[BaseModel]] = GcpAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = GcpGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return check_group(group)

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> GcpClient:
        from autoscaler.providers.gcp.client import GcpClient

        return GcpClient(account, groups, clock)
