"""The provider conformance suite against the aws client on moto's server.

moto launches every instance at once as ``InService`` and has no clock, so the checks about
boot time and the order of drains do not apply (``SKIPPED`` says so); a stockout is the
``before-send`` hook of ``tests.aws.support`` (accepted, short, a failed launch activity).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.aws import AwsAccountSettings, AwsGroupSettings
from autoscaler.providers.aws.client import AwsClient
from autoscaler.testing import conformance
from autoscaler.testing.conformance import CHECKS, Check
from tests.aws.support import REGION, MotoCloud
from tests.contract.support import poll

SKIPPED = {
    conformance.check_scale_out_pending_or_booting_then_running:
        "moto launches instances InService at once: no booting to observe",
    conformance.check_scale_in_drains_in_order:
        "moto terminates at once (no Terminating:Wait) and the ASG picks its own victims",
}
_names = itertools.count()


class AwsHarness:
    boot_time_s = 30.0
    picks_victims = False  # the ASG's termination policy does

    def __init__(self, cloud: MotoCloud) -> None:
        self.cloud = cloud
        self.clients: list[AwsClient] = []

    def asg(self, group: GroupId) -> str:
        return f"conf-{group.group}"

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        ids = [GroupId("p", f"g{next(_names)}") for _ in range(groups)]
        self.cloud.create(*(self.asg(g) for g in ids))
        managed = [ManagedGroup(g, Market.SPOT, AwsGroupSettings(asg=self.asg(g)),
                                boot_time_s=self.boot_time_s) for g in ids]
        account = AccountSpec("aws-conf", "aws",
                              AwsAccountSettings(region=REGION, endpoint_url=self.cloud.url))
        client = AwsClient(account, managed, ManualClock())
        await client.start()
        self.cloud.install(client.sdk)
        self.clients.append(client)
        return client, ids

    async def advance(self, seconds: float) -> None:
        return None  # moto has no clock: its instances are InService already

    async def hold_victims(self, hold: bool) -> None:
        return None

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        if failing:
            self.cloud.stock_out(self.asg(group))
        else:
            self.cloud.restock(self.asg(group))

    async def live_ids(self, group: GroupId) -> list[str]:
        return [s.instance.id for s in self.cloud.group(self.asg(group)).instance_states]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=10.0)

    async def close(self) -> None:
        for client in self.clients:
            await client.close(0.0)


@pytest.fixture
async def harness(cloud: MotoCloud) -> AsyncIterator[AwsHarness]:
    h = AwsHarness(cloud)
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_aws_conforms(check: Check, harness: AwsHarness) -> None:
    if check in SKIPPED:
        pytest.skip(SKIPPED[check])
    await check(harness)
