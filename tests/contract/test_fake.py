"""The conformance suite against the fake provider shipped in ``autoscaler.testing.fakes``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.testing.conformance import CHECKS, Check
from autoscaler.testing.fakes import FakeAccountSettings, FakeClient, FakeGroupSettings
from tests.contract.support import poll


class FakeHarness:
    boot_time_s = 30.0
    picks_victims = True

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.client: FakeClient | None = None

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        specs = [ManagedGroup(GroupId("p", f"g{i}"), Market.SPOT, FakeGroupSettings(),
                           boot_time_s=self.boot_time_s) for i in range(groups)]
        account = AccountSpec("fake", "fake", FakeAccountSettings())
        self.client = FakeClient(account, specs, self.clock)
        await self.client.start()
        return self.client, [s.id for s in specs]

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def hold_victims(self, hold: bool) -> None:
        assert self.client is not None
        for group in self.client.groups.values():
            group.drain_s = 1e9 if hold else 0.0
            if not hold:
                for inst in group.instances:
                    if inst.draining_until is not None:
                        inst.draining_until = self.clock.monotonic()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        assert self.client is not None
        self.client.set_capacity(group, 0 if failing else None)

    async def live_ids(self, group: GroupId) -> list[str]:
        assert self.client is not None
        return [str(i.id) for i in self.client.live(group)]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=1.0)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close(0.0)


@pytest.fixture
async def harness() -> AsyncIterator[FakeHarness]:
    h = FakeHarness()
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_fake_conforms(check: Check, harness: FakeHarness) -> None:
    await check(harness)


async def test_fake_refusing_mode_conforms(harness: FakeHarness) -> None:
    """The other shape of a capacity failure: the resize itself is refused."""
    from autoscaler.testing.conformance import check_failed_launches_are_unavailable_with_a_reason

    original = harness.open

    async def refusing(groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        client, ids = await original(groups)
        assert harness.client is not None
        harness.client.capacity_mode = "raise"
        return client, ids

    harness.open = refusing  # type: ignore[method-assign]
    await check_failed_launches_are_unavailable_with_a_reason(harness)
