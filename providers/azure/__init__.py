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

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import ConfigError
from autoscaler.ports.provider import AccountClient, AccountSpec, ManagedGroup, missing_extra
from autoscaler.providers.azure.settings import (
    AzureAccountSettings,
    AzureGroupSettings,
    group_problems,
)

__all__ = ["AzureAccountSettings", "AzureGroupSettings", "AzureProvider"]



class AzureProvider:
    """The ``azure`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "azure"
    AccountSettings: ClassVar[type[BaseModel]] = AzureAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = AzureGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return group_problems(group, account)

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> AccountClient:
        missing = missing_extra("the azure provider", "azure", SDK_MODULES)
        if missing:
            raise ConfigError(f"account {account.name!r}: {missing}")
        from autoscaler.providers.azure.client import AzureClient

        return AzureClient(account, groups, clock)


SDK_MODULES = ("azure.mgmt.compute", "azure.identity", "aiohttp")
