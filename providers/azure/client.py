"""The account client of the ``azure`` kind: describe and resize scale sets through
azure-mgmt-compute's aio ``ComputeManagementClient``.

Choices, and what they cost:

- **Describe, batched per resource group.** ARM has no "get these N scale sets" call; listing
  a resource group's scale sets is one paged call for every group in it. Each group's VMs then
  take one paged call (``$expand=instanceView``, for provisioning and power states), all
  groups concurrently. A resource group that fails (404, 403) fails only its own groups.
- **Resize = PATCH ``sku`` with the new capacity**, sending the SKU name and tier that the
  last describe saw (what ``az vmss scale`` sends; a GET first if this client has not described
  the group yet). ``begin_update`` is called with ``polling=False``: it returns when ARM has
  answered the initial PATCH, i.e. the scale set ACCEPTED the capacity, and the long-running
  operation is left to Azure (launch failures then show on the VMs, seen by describe). The
  PATCH of an absolute capacity is idempotent; ``request_id`` goes out as
  ``x-ms-client-request-id`` (ARM has no idempotency key; the id ties the retries of one
  actuation together in Azure's activity log).
- **Evicted Spot VMs** (``Deallocate`` policy) are not capacity (``states``) and are deleted,
  and waited for, right before the group's next resize: a write, so only the acting daemon
  does it, and only when it changes the group (never from a describe, which standbys and dry
  runs make too).
- **azure-core's own retries are off** (``retry_total=0``): the daemon's actuator retries by
  class, with ``Retry-After`` for 429, so backoff happens in one place, logged and counted,
  instead of hidden inside one call that the daemon cannot see and that could outlast its
  deadline.

Not guaranteed: a PATCH that ARM accepted while another update of the scale set runs may be
answered 409 (``Conflict``, retried); the scale-in victims are Azure's choice (its scale-in
policy), not the product's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import NotFound, ProviderError
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.azure.errors import map_error
from autoscaler.providers.azure.settings import (
    AzureAccountSettings,
    AzureGroupSettings,
    group_problems,
)
from autoscaler.providers.azure.states import group_state

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.mgmt.compute.aio import ComputeManagementClient

log = structlog.get_logger("autoscaler.providers.azure")

DELETE_POLL_S = 5.0
"""Seconds between polls of an evicted-VM deletion (Azure's ``Retry-After`` wins if sent)."""


def make_credential(settings: AzureAccountSettings) -> AsyncTokenCredential:
    """The azure-identity credential the account's ``credential`` names."""
    from azure.identity import aio as identity

    client_id = settings.managed_identity_client_id
    match settings.credential:
        case "environment":
            return identity.EnvironmentCredential()
        case "workload_identity":
            return identity.WorkloadIdentityCredential()
        case "managed_identity":
            return identity.ManagedIdentityCredential(client_id=client_id)
        case "cli":
            return identity.AzureCliCredential()
        case _:
            return identity.DefaultAzureCredential(managed_identity_client_id=client_id)


def _plain(model: Any) -> Mapping[str, Any]:
    """An SDK model as its REST JSON (camelCase keys): ``states`` reads the published shape."""
    as_dict = getattr(model, "as_dict", None)
    result = as_dict() if callable(as_dict) else model
    return result if isinstance(result, Mapping) else {}


class AzureClient:
    """One client per ``azure`` account, shared by all its groups (see the module docstring).

    ``credential`` and ``per_call_policies`` replace what the account's settings would build:
    tests pass a static credential and a policy that allows a bearer token over plain http to
    a local fake; production passes neither.
    """

    def __init__(
        self,
        account: AccountSpec,
        groups: Sequence[ManagedGroup],
        clock: Clock,
        *,
        credential: AsyncTokenCredential | None = None,
        per_call_policies: Sequence[Any] = (),
    ) -> None:
        settings = account.settings
        if not isinstance(settings, AzureAccountSettings):
            raise TypeError(f"account {account.name!r}: azure account settings expected")
        problems = [f"group {g.id}: {message}" for g in groups
                    for _, message in group_problems(g, settings)]
        seen: dict[tuple[str, str], GroupId] = {}
        for g in groups:
            if not isinstance(g.settings, AzureGroupSettings):
                continue  # already a problem above
            key = self._key(g)
            if key in seen:
                problems.append(f"groups {seen[key]} and {g.id} both resize scale set "
                                f"{key[1]!r} of resource group {key[0]!r}")
            seen[key] = g.id
        if problems:
            raise ValueError("; ".join(problems))
        self.account = account.name
        self.settings = settings
        self.groups = {g.id: g for g in groups}
        self._clock = clock
        self._credential = credential
        self._owns_credential = credential is None
        self._policies = list(per_call_policies)
        self._compute: ComputeManagementClient | None = None
        self._skus: dict[GroupId, Mapping[str, Any]] = {}
        self._evicted: dict[GroupId, frozenset[str]] = {}
        """Instance ids of each group's evicted (deallocated) Spot VMs at its last describe:
        deleted before its next resize (``states``: they are not capacity)."""

    @staticmethod
    def _key(group: ManagedGroup) -> tuple[str, str]:
        settings = group.settings
        assert isinstance(settings, AzureGroupSettings)
        return settings.resource_group.lower(), settings.vmss.lower()

    def _settings(self, gid: GroupId, operation: str) -> AzureGroupSettings:
        group = self.groups.get(gid)
        if group is None:
            raise NotFound("not a group of this account", account=self.account,
                           group=str(gid), operation=operation)
        settings = group.settings
        assert isinstance(settings, AzureGroupSettings)
        return settings

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Build the credential and the SDK client. No call goes out yet: a bad credential
        shows as ``Denied`` on the first describe, named per group."""
        from azure.mgmt.compute.aio import ComputeManagementClient

        if self._credential is None:
            self._credential = make_credential(self.settings)
        kwargs: dict[str, Any] = {"retry_total": 0, "per_call_policies": self._policies}
        base_url = self.settings.base_url
        if base_url is not None:
            kwargs["base_url"] = base_url
            kwargs["credential_scopes"] = [base_url.rstrip("/") + "/.default"]
        self._compute = ComputeManagementClient(
            self._credential, self.settings.subscription_id, **kwargs)
        log.info("azure_client_started", account=self.account,
                 subscription_id=self.settings.subscription_id,
                 base_url=base_url or "default", credential=self.settings.credential,
                 groups=len(self.groups))

    async def close(self, drain_timeout_s: float) -> None:
        """Close the SDK's connections; the scale sets keep their size (nothing to drain)."""
        if self._compute is not None:
            await self._compute.close()
            self._compute = None
        if self._credential is not None and self._owns_credential:
            close = getattr(self._credential, "close", None)
            if close is not None:
                await close()
            self._credential = None

    def _sdk(self, gid: GroupId | None, operation: str) -> ComputeManagementClient:
        if self._compute is None:
            raise ProviderError("client not started", account=self.account,
                                group=str(gid or ""), operation=operation)
        return self._compute

    # ------------------------------------------------------------------ describe

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        result: dict[GroupId, GroupState | ProviderError] = {}
        by_rg: dict[str, list[GroupId]] = {}
        for gid in groups:
            try:
                settings = self._settings(gid, "describe")
            except NotFound as exc:
                result[gid] = exc
                continue
            by_rg.setdefault(settings.resource_group.lower(), []).append(gid)
        listed = await asyncio.gather(*(self._list_sets(rg, gids) for rg, gids in by_rg.items()))
        scale_sets: dict[GroupId, Mapping[str, Any]] = {}
        for (rg, gids), sets in zip(by_rg.items(), listed, strict=True):
            for gid in gids:
                if isinstance(sets, Exception):
                    result[gid] = self._mapped(sets, gid, "describe")
                    continue
                vmss = sets.get(self._settings(gid, "describe").vmss.lower())
                if vmss is None:
                    result[gid] = NotFound(
                        f"no scale set {self._settings(gid, 'describe').vmss!r} in resource "
                        f"group {rg!r}", account=self.account, group=str(gid),
                        operation="describe")
                else:
                    scale_sets[gid] = vmss
        states = await asyncio.gather(*(self._state(gid, vmss) for gid, vmss in scale_sets.items()))
        result.update(zip(scale_sets, states, strict=True))
        return result

    def _mapped(self, exc: Exception, gid: GroupId, operation: str) -> ProviderError:
        """``exc`` as the tree's error for ``gid``, chained as ``raise ... from`` would."""
        error = map_error(exc, account=self.account, group=str(gid), operation=operation)
        if error is not exc:
            error.__cause__ = exc
        return error

    async def _list_sets(
        self, rg: str, gids: Sequence[GroupId]
    ) -> dict[str, Mapping[str, Any]] | Exception:
        """The resource group's scale sets by lower-case name, or the SDK's failure (mapped
        by the caller for each of the resource group's groups)."""
        try:
            pages = self._sdk(gids[0], "describe").virtual_machine_scale_sets.list(rg)
            return {str(s.get("name", "")).lower(): s
                    for s in [_plain(m) async for m in pages]}
        except Exception as exc:  # every SDK failure, mapped once by the caller
            return exc

    async def _state(self, gid: GroupId, vmss: Mapping[str, Any]) -> GroupState | ProviderError:
        settings = self._settings(gid, "describe")
        try:
            pages = self._sdk(gid, "describe").virtual_machine_scale_set_vms.list(
                settings.resource_group, settings.vmss, expand="instanceView")
            vms = [_plain(m) async for m in pages]
        except Exception as exc:  # every SDK failure, mapped once
            return self._mapped(exc, gid, "describe")
        sku = vmss.get("sku")
        if isinstance(sku, Mapping):
            self._skus[gid] = sku
        seen = self._evicted.get(gid, frozenset())
        state, evicted = group_state(gid.group, self.groups[gid].market, vmss, vms, seen)
        if evicted - seen:
            log.warning("spot_evicted", account=self.account, group=str(gid),
                        evicted=len(evicted), previously=len(seen),
                        action="not counted as capacity; deleted before the group's next resize")
        self._evicted[gid] = evicted
        return state

    # ------------------------------------------------------------------ resize

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        if target < 0:
            raise ValueError(f"group {group}: target must be >= 0, got {target}")
        settings = self._settings(group, "resize")
        from azure.mgmt.compute.models import Sku, VirtualMachineScaleSetUpdate

        try:
            sdk = self._sdk(group, "resize")
            await self._delete_evicted(sdk, group, settings, request_id)
            known = self._skus.get(group)
            if known is None:
                current = await sdk.virtual_machine_scale_sets.get(
                    settings.resource_group, settings.vmss, request_id=request_id)
                known = _plain(current).get("sku") or {}
                self._skus[group] = known
            sku = Sku(name=known.get("name"), tier=known.get("tier"), capacity=target)
            await sdk.virtual_machine_scale_sets.begin_update(
                settings.resource_group, settings.vmss, VirtualMachineScaleSetUpdate(sku=sku),
                polling=False, request_id=request_id)
        except Exception as exc:  # every SDK failure, mapped once
            raise map_error(exc, account=self.account, group=str(group),
                            operation="resize") from exc
        log.info("azure_capacity_accepted", account=self.account, group=str(group),
                 target=target, request_id=request_id)

    async def _delete_evicted(self, sdk: ComputeManagementClient, group: GroupId,
                              settings: AzureGroupSettings, request_id: str) -> None:
        """Delete the group's evicted Spot VMs and wait for Azure to finish: each lowers
        ``sku.capacity`` by one, so the PATCH that follows sets a capacity of VMs that can
        run (done the other way round, the delete would lower the new capacity)."""
        ids = sorted(self._evicted.get(group, frozenset()))
        if not ids:
            return
        from azure.mgmt.compute.models import VirtualMachineScaleSetVMInstanceRequiredIDs

        poller = await sdk.virtual_machine_scale_sets.begin_delete_instances(
            settings.resource_group, settings.vmss,
            VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=ids),
            polling_interval=DELETE_POLL_S, request_id=request_id)
        await poller.result()
        self._evicted[group] = frozenset()
        log.info("spot_evicted_deleted", account=self.account, group=str(group),
                 instance_ids=ids, request_id=request_id)
