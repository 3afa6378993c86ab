"""The conformance suite against the ``azure`` adapter: the real azure-mgmt-compute aio client
talking HTTP to the local ARM fake (``tests/azure_fake.py``), on a manual clock.

Azure picks its own scale-in victims (its scale-in policy), so the victim-order checks are
skipped (``picks_victims = False``); everything else applies as written.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.azure import AzureAccountSettings, AzureGroupSettings
from autoscaler.providers.azure.client import AzureClient
from autoscaler.testing.conformance import CHECKS, Check
from tests.azure_fake import AllowHttp, AzureFake, StaticCredential
from tests.contract.support import poll

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


class AzureHarness:
    boot_time_s = 30.0
    picks_victims = False

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.fake = AzureFake(SUBSCRIPTION, self.clock.monotonic, boot_time_s=self.boot_time_s)
        self.clients: list[AzureClient] = []
        self.names: dict[GroupId, str] = {}
        self._ids = itertools.count()

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        if not self.fake.base_url:
            await self.fake.start()
        specs = []
        for _ in range(groups):
            n = next(self._ids)
            self.fake.add("rg-conformance", f"vmss-{n}", priority="Spot")
            gid = GroupId("p", f"g{n}")
            self.names[gid] = f"vmss-{n}"
            specs.append(ManagedGroup(gid, Market.SPOT, AzureGroupSettings(
                resource_group="rg-conformance", vmss=f"vmss-{n}"), boot_time_s=self.boot_time_s))
        account = AccountSpec("az", "azure", AzureAccountSettings(
            subscription_id=SUBSCRIPTION, base_url=self.fake.base_url))
        client = AzureClient(account, specs, self.clock, credential=StaticCredential(),
                             per_call_policies=[AllowHttp()])
        await client.start()
        self.clients.append(client)
        return client, [s.id for s in specs]

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def hold_victims(self, hold: bool) -> None:
        self.fake.drain_s = float("inf") if hold else 0.0
        if not hold:
            for ss in self.fake.scale_sets.values():
                for vm in ss.vms:
                    if vm.deleting_until is not None:
                        vm.deleting_until = self.clock.monotonic()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        self.fake.get("rg-conformance", self.names[group]).stock = 0 if failing else None

    async def live_ids(self, group: GroupId) -> list[str]:
        ss = self.fake.get("rg-conformance", self.names[group])
        return [str(vm.instance_id) for vm in ss.vms if vm.deleting_until is None]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=5.0)

    async def close(self) -> None:
        for client in self.clients:
            await client.close(0.0)
        await self.fake.close()


@pytest.fixture
async def harness() -> AsyncIterator[AzureHarness]:
    h = AzureHarness()
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_azure_conforms(check: Check, harness: AzureHarness) -> None:
    await check(harness)


async def test_azure_refusing_mode_conforms(harness: AzureHarness) -> None:
    """The other shape of a capacity failure: ARM refuses the PATCH (SkuNotAvailable)."""
    from autoscaler.testing.conformance import check_failed_launches_are_unavailable_with_a_reason

    async def refusing(group: GroupId, failing: bool) -> None:
        ss = harness.fake.get("rg-conformance", harness.names[group])
        ss.refuse_code = "SkuNotAvailable" if failing else None

    harness.fail_launches = refusing  # type: ignore[method-assign]
    await check_failed_launches_are_unavailable_with_a_reason(harness)
    assert not harness.fake.writes()  # refused: no PATCH was answered 200


async def test_describe_is_one_list_per_resource_group(harness: AzureHarness) -> None:
    """Three groups in one resource group: one paged list of scale sets (the fake pages by 2,
    so two GETs of the list), then one VM list per group; never a GET per scale set."""
    client, groups = await harness.open(3)
    harness.fake.requests.clear()
    await client.describe(groups)
    paths = [r.path.rsplit("/", 1)[-1] for r in harness.fake.requests]
    assert paths.count("virtualMachineScaleSets") == 2
    assert paths.count("virtualMachines") == 3 and len(paths) == 5
