"""The conformance suite against the ``gcp`` provider, through the real google-cloud-compute
client, on the local Compute REST fake (``tests/gcp/fake_compute.py``).

The MIG chooses its own scale-in victims (``picks_victims`` False): the product does not
control them on GCP. Launch failures take the "accepted and falling short" shape: the resize
succeeds and the group describes unavailable with the ``lastAttempt`` error as its reason.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from autoscaler.core.model import GroupState
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, GroupId
from autoscaler.providers.gcp import GcpGroupSettings
from autoscaler.providers.gcp.client import GcpClient
from autoscaler.testing.conformance import CHECKS, Check
from tests.contract.support import poll
from tests.gcp.fake_compute import FakeCompute
from tests.gcp.support import gcp_client


class GcpHarness:
    boot_time_s = 30.0
    picks_victims = False

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.fake = FakeCompute(self.clock, boot_s=self.boot_time_s).start()
        self.clients: list[GcpClient] = []
        self.migs: dict[GroupId, str] = {}
        self._n = itertools.count()

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        members = []
        for i in range(groups):
            n = next(self._n)
            gid = GroupId("p", f"g{i}")
            # Every other group is regional: both API families run the same checks.
            if n % 2:
                self.fake.add_mig(f"mig-{n}", zone=None, region="us-central1")
                settings = GcpGroupSettings(mig=f"mig-{n}", region="us-central1")
            else:
                self.fake.add_mig(f"mig-{n}", zone="us-central1-a")
                settings = GcpGroupSettings(mig=f"mig-{n}", zone="us-central1-a")
            self.migs[gid] = f"mig-{n}"
            members.append((gid, settings))
        client = gcp_client(self.fake.endpoint, members, self.clock)
        self.clients.append(client)
        await client.start()
        return client, [gid for gid, _ in members]

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def hold_victims(self, hold: bool) -> None:
        if hold:
            self.fake.hold_drains = True
        else:
            self.fake.release_drains()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        self.fake.set_failing(self.migs[group], failing)

    async def live_ids(self, group: GroupId) -> list[str]:
        return [i.name for i in self.fake.live(self.migs[group])]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=10.0)

    async def close(self) -> None:
        for client in self.clients:
            await client.close(1.0)
        self.fake.stop()


@pytest.fixture
async def harness() -> AsyncIterator[GcpHarness]:
    h = GcpHarness()
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_gcp_conforms(check: Check, harness: GcpHarness) -> None:
    await check(harness)
