"""The provider conformance suite: what every provider's ``GroupState`` and ``resize`` mean.

A plugin author writes one ``Harness`` for their provider (how to open a client on a test
group, move its clock, make its launches fail, keep victims busy) and runs every check in
``CHECKS`` against it, e.g. with pytest::

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, my_harness):
        await check(my_harness)

The suite runs in this repository against ``local`` (real processes), the fake provider
and the simulator's fleet (``tests/contract/``). The meanings it checks are those written in
``autoscaler.core.model.GroupState``:

- a resize is accepted into ``desired`` at once; new capacity is ``pending`` or ``booting``
  until the boot time has passed, then ``running``; ``current`` counts all three;
- scale-in drains victims in the product's order (``scale_in_key``: booting first, then
  newest); a draining instance is neither running nor part of ``desired`` or ``current``;
- a resize to the size the group already has is not a scale action: nothing launches or
  drains; resizing twice to one target is one change (idempotence);
- launches that fail either make the resize raise ``CapacityUnavailable`` with a message, or
  (accepted and falling short, as AWS does) leave the group unavailable with a ``reason``;
- unknown groups are ``NotFound``.

What it cannot check: the cloud's own victim choice (AWS termination policies, MIG), which
the product does not control; ``allow_foreign_victims`` on the harness skips that check.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from autoscaler.core.model import GroupState
from autoscaler.ports.errors import CapacityUnavailable, NotFound, ProviderError
from autoscaler.ports.provider import AccountClient, GroupId


class ConformanceError(AssertionError):
    """A provider broke the contract; the message says which rule and what was seen."""


class Harness(Protocol):
    """What the suite needs from a provider under test. Groups have ``boot_time_s`` > 0."""

    boot_time_s: float
    picks_victims: bool
    """True when the provider chooses scale-in victims itself (then their order is checked)."""

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        """A started client and ``groups`` fresh, empty test groups on it."""
        ...

    async def advance(self, seconds: float) -> None:
        """Move the provider's clock (and let it react: processes start, drains end)."""
        ...

    async def hold_victims(self, hold: bool) -> None:
        """While held, instances told to stop keep draining (they have work in flight)."""
        ...

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        """Make launches in ``group`` fail (a stockout) or succeed again."""
        ...

    async def live_ids(self, group: GroupId) -> list[str]:
        """Ids of the group's instances that are not draining, oldest launch first."""
        ...

    async def eventually(
        self, client: AccountClient, group: GroupId, ok: Callable[[GroupState], bool], what: str
    ) -> GroupState:
        """Describe until ``ok`` holds (real processes take real time); fail naming ``what``."""
        ...

    async def close(self) -> None: ...


Check = Callable[[Harness], Awaitable[None]]


def expect(condition: bool, rule: str, seen: object) -> None:
    if not condition:
        raise ConformanceError(f"{rule}; seen: {seen}")


async def describe_one(client: AccountClient, group: GroupId) -> GroupState:
    result = (await client.describe([group]))[group]
    if isinstance(result, ProviderError):
        raise ConformanceError(f"describe of {group} failed: {result!r}")
    return result


async def resize(client: AccountClient, group: GroupId, target: int) -> None:
    await client.resize(group, target, str(uuid.uuid4()))


async def check_new_group_is_empty(h: Harness) -> None:
    client, [g] = await h.open(1)
    s = await describe_one(client, g)
    expect((s.desired, s.pending, s.booting, s.running, s.draining) == (0, 0, 0, 0, 0),
           "a fresh group is empty", s)
    expect(s.available and s.current == 0, "a fresh group is available, current 0", s)


async def check_scale_out_pending_or_booting_then_running(h: Harness) -> None:
    client, [g] = await h.open(1)
    await resize(client, g, 2)
    s = await describe_one(client, g)
    expect(s.desired == 2, "resize is accepted into desired at once", s)
    expect(s.running == 0 and s.pending + s.booting == 2,
           "new instances are pending or booting before the boot time", s)
    expect(s.current == 2, "current counts what was asked for", s)
    await h.advance(h.boot_time_s)
    s = await h.eventually(client, g, lambda s: s.running == 2, "two running after boot time")
    expect((s.desired, s.pending, s.booting, s.draining) == (2, 0, 0, 0),
           "after the boot time everything runs", s)


async def check_resize_is_idempotent(h: Harness) -> None:
    client, [g] = await h.open(1)
    request = str(uuid.uuid4())
    await client.resize(g, 2, request)
    await client.resize(g, 2, request)  # a retry of the same actuation
    await client.resize(g, 2, str(uuid.uuid4()))  # a later decision with the same target
    s = await describe_one(client, g)
    expect(s.desired == 2 and s.pending + s.booting + s.running == 2,
           "three resizes to 2 make 2 instances, not more", s)
    expect(len(await h.live_ids(g)) <= 2, "no duplicate launches", await h.live_ids(g))


async def check_same_size_is_not_a_scale_action(h: Harness) -> None:
    client, [g] = await h.open(1)
    await resize(client, g, 1)
    await h.advance(h.boot_time_s)
    await h.eventually(client, g, lambda s: s.running == 1, "one running")
    before = await h.live_ids(g)
    await resize(client, g, 1)
    s = await describe_one(client, g)
    expect(await h.live_ids(g) == before and s.draining == 0 and s.booting == 0,
           "a resize to the current size launches and drains nothing", s)


async def check_scale_in_drains_in_order(h: Harness) -> None:
    client, [g] = await h.open(1)
    await resize(client, g, 1)
    await h.advance(1.0)
    await resize(client, g, 2)
    await h.advance(h.boot_time_s)
    await h.eventually(client, g, lambda s: s.running == 2, "two running")
    await resize(client, g, 3)  # the third still boots
    old, new, _booting = await h.live_ids(g)
    await resize(client, g, 2)
    s = await h.eventually(client, g, lambda s: s.booting == 0 and s.draining == 0,
                           "the booting one to go")
    expect(s.desired == 2 and s.running == 2, "scale-in 3 -> 2 keeps both running ones", s)
    if h.picks_victims:
        expect(await h.live_ids(g) == [old, new], "booting instances are removed first",
               await h.live_ids(g))
    await h.hold_victims(True)
    await resize(client, g, 1)
    s = await h.eventually(client, g, lambda s: s.draining >= 1, "a draining instance")
    expect((s.desired, s.running, s.draining, s.current) == (1, 1, 1, 1),
           "a draining instance is neither running nor part of desired or current", s)
    if h.picks_victims:
        expect(await h.live_ids(g) == [old], "then the newest running instance",
               await h.live_ids(g))
    await h.hold_victims(False)
    await h.advance(1.0)
    s = await h.eventually(client, g, lambda s: s.draining == 0, "the drain to end")
    expect((s.desired, s.running) == (1, 1), "a finished drain leaves the group", s)


async def check_failed_launches_are_unavailable_with_a_reason(h: Harness) -> None:
    client, [g] = await h.open(1)
    await h.fail_launches(g, True)
    try:
        await resize(client, g, 2)
    except CapacityUnavailable as exc:
        # Refusing the resize is one way (the daemon then marks the group unavailable with
        # the error's message); accepting and falling short, as AWS does, is the other.
        expect(bool(exc.message), "a refused resize says why", repr(exc))
        s = await describe_one(client, g)
        expect(s.booting + s.running == 0, "a refused resize launches nothing", s)
        return
    s = await h.eventually(client, g, lambda s: not s.available, "the group to be unavailable")
    expect(bool(s.reason), "an unavailable group says why", s)
    expect(s.booting + s.running == 0, "failed launches are neither booting nor running", s)
    expect(s.pending == max(0, s.desired - s.booting - s.running),
           "what was accepted and not launched is pending", s)


async def check_unknown_group_is_not_found(h: Harness) -> None:
    client, [g] = await h.open(1)
    ghost = GroupId(g.pool, g.group + "-missing")
    try:
        result = (await client.describe([g, ghost]))
    except NotFound:
        return
    expect(isinstance(result.get(ghost), NotFound), "an unknown group describes as NotFound",
           result.get(ghost))
    expect(isinstance(result.get(g), GroupState), "the known group is still described",
           result.get(g))


async def check_describe_is_batched(h: Harness) -> None:
    client, groups = await h.open(3)
    await resize(client, groups[1], 1)
    result = await client.describe(groups)
    expect(set(result) == set(groups), "one describe answers for every asked group", result)
    desired = [r.desired if isinstance(r, GroupState) else r for r in result.values()]
    expect(sorted(map(str, desired)) == ["0", "0", "1"], "each group is its own", desired)


CHECKS: tuple[Check, ...] = (
    check_new_group_is_empty,
    check_scale_out_pending_or_booting_then_running,
    check_resize_is_idempotent,
    check_same_size_is_not_a_scale_action,
    check_scale_in_drains_in_order,
    check_failed_launches_are_unavailable_with_a_reason,
    check_unknown_group_is_not_found,
    check_describe_is_batched,
)
