"""``azure``: Azure Virtual Machine Scale Sets on azure-mgmt-compute's aio client.

Account (an entry of ``providers:``): ``subscription_id``; optional ``base_url`` (the ARM
endpoint: a sovereign cloud, or a test fake), ``credential`` (which azure-identity credential:
``default`` = ``DefaultAzureCredential``'s chain of environment, workload identity, managed
identity, Azure CLI...; or exactly one of ``environment``, ``workload_identity``,
``managed_identity``, ``cli``) and ``managed_identity_client_id`` (a user-assigned identity).
The config never holds a secret: a service principal's secret or certificate comes through the
environment variables that ``EnvironmentCredential`` reads.

Group: ``resource_group`` and ``vmss`` (the scale set's name).

What the adapter does (``client.py``): one describe lists each resource group's scale sets (one
paged call per resource group, whatever the number of groups in it) and each group's VMs with
their instance views; a resize PATCHes ``sku.capacity`` and returns once ARM answered the
PATCH (the scale set accepted the new capacity), never waiting for the long-running operation
to finish, so instance launches are followed through describe, like every other provider.
Mapping of VM states: ``states.py``; of errors: ``errors.py``.

The SDK (slow to import) is imported only when a client is made, so ``autoscaler validate``
and the simulator never pay for it; a missing SDK names the ``azure`` extra to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import ConfigError
from autoscaler.ports.provider import AccountClient, AccountSpec, ManagedGroup

Credential = Literal["default", "environment", "workload_identity", "managed_identity", "cli"]
EXTRA_HINT = "pip install 'queue-autoscaler[azure]'"


class AzureAccountSettings(BaseModel):
    """The keys of an ``azure`` account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z-]+$",
                                 description="the subscription holding the scale sets")
    base_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="ARM endpoint (default https://management.azure.com)")
    credential: Credential = Field(
        default="default", description="default (DefaultAzureCredential's chain), environment, "
        "workload_identity, managed_identity or cli")
    managed_identity_client_id: str | None = Field(
        default=None, min_length=1, description="client id of a user-assigned managed identity")

    @model_validator(mode="after")
    def _identity_needs_managed(self) -> AzureAccountSettings:
        if self.managed_identity_client_id is not None and self.credential not in (
            "default", "managed_identity"
        ):
            raise ValueError("managed_identity_client_id applies only to credential: "
                             f"managed_identity or default, not {self.credential!r}")
        return self


class AzureGroupSettings(BaseModel):
    """The keys of an ``azure`` group (Azure's own naming rules, checked at load time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_group: str = Field(min_length=1, max_length=90, pattern=r"^[-\w.()]*[-\w()]$",
                                description="the scale set's resource group")
    vmss: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][-\w.]*$",
                      description="the scale set's name")


class AzureProvider:
    """The ``azure`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "azure"
    AccountSettings: ClassVar[type[BaseModel]] = AzureAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = AzureGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        if not isinstance(group.settings, AzureGroupSettings):
            return [("", "azure provider settings expected")]
        if not isinstance(account, AzureAccountSettings):
            return [("provider", "an azure group needs an account of kind azure")]
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> AccountClient:
        missing = [name for name in SDK_MODULES if not _installed(name)]
        if missing:
            raise ConfigError(
                f"account {account.name!r}: the azure provider needs {', '.join(missing)} "
                f"({EXTRA_HINT})")
        from autoscaler.providers.azure.client import AzureClient

        return AzureClient(account, groups, clock)


SDK_MODULES = ("azure.mgmt.compute", "azure.identity", "aiohttp")


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (the SDK is slow to import:
    ``start`` imports it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):
        return False
