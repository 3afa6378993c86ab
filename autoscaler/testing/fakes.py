"""An in-memory provider for plugin authors and runtime tests: the ``fake`` kind.

``FakeClient`` behaves like a cloud account that follows the contract of
``autoscaler.ports.provider``: ``resize`` is accepted at once and idempotent; instances boot for
the group's ``boot_time`` on the injected clock, then run; scale-in drains victims (in the
product's order, ``scale_in_key``) for ``drain_s`` seconds; a capacity limit leaves the rest of
``desired`` pending and reports the group unavailable with a reason, like an Auto Scaling group
that accepted a size it cannot launch (or, with ``capacity_mode="raise"``, refuses the resize
with ``CapacityUnavailable``). Errors of every class can be injected per operation, and calls can
be made slow (``asyncio.sleep`` on the loop clock: virtual under ``looptime``). ``preempt``
interrupts spot instances and ``stall`` keeps launches booting, for the spot-fallback tests.

Register it in a test registry: ``registries["providers"].register("fake", FakeProvider)``;
clients built for an account are kept in ``FakeProvider.clients`` by account name.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.core.model import GroupState, scale_in_key
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup

Operation = Literal["start", "describe", "resize", "close"]

ERRORS: dict[str, type[ProviderError]] = {
    "throttled": Throttled, "capacity_unavailable": CapacityUnavailable, "denied": Denied,
    "not_found": NotFound, "conflict": Conflict, "transient": Transient,
}


class FakeAccountSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(default="local-1", description="only echoed back: the fake has no cloud")


class FakeGroupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: int | None = Field(default=None, ge=0, description="instances the cloud can hold")
    drain: float = Field(default=0.0, ge=0, description="seconds a victim stays draining")
    refuse: Literal[
        "throttled", "capacity_unavailable", "denied", "not_found", "conflict", "transient",
    ] | None = Field(default=None, description="every resize raises this class of error")


@dataclass(eq=False)
class FakeInstance:
    id: int
    started_at: float
    ready_at: float
    draining_until: float | None = None


@dataclass
class FakeGroup:
    spec: ManagedGroup
    capacity: int | None
    drain_s: float
    desired: int = 0
    instances: list[FakeInstance] = field(default_factory=list)
    refuse: str | None = None
    stalled: bool = False
    """Instances launched while stalled stay booting until ``stall(..., False)``."""
    changes: int = 0
    """Resizes that changed ``desired`` (what the product counts as a scale action)."""
    request_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    operation: str
    groups: tuple[GroupId, ...]
    target: int | None = None
    request_id: str | None = None
    at: float = 0.0


class FakeClient:
    """One fake account (see the module docstring). Inspect ``calls`` and ``groups``."""

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        self.account = account.name
        self.clock = clock
        self.groups: dict[GroupId, FakeGroup] = {}
        for spec in groups:
            settings = spec.settings
            if not isinstance(settings, FakeGroupSettings):
                settings = FakeGroupSettings()
            self.groups[spec.id] = FakeGroup(spec, settings.capacity, settings.drain,
                                             refuse=settings.refuse)
        self.calls: list[Call] = []
        self.started = False
        self.closed = False
        self.capacity_mode: Literal["pending", "raise"] = "pending"
        self._errors: dict[tuple[str, GroupId | None], list[ProviderError]] = defaultdict(list)
        self._delays: dict[tuple[str, GroupId | None], float] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ test controls

    def fail(
        self, operation: Operation, *errors: ProviderError, group: GroupId | None = None
    ) -> None:
        """The next calls of ``operation`` (on ``group``, or any) raise these, in order."""
        self._errors[(operation, group)].extend(errors)

    def delay(self, operation: Operation, seconds: float, group: GroupId | None = None) -> None:
        """Calls of ``operation`` (on ``group``, or any) take ``seconds`` of loop time."""
        self._delays[(operation, group)] = seconds

    def set_capacity(self, group: GroupId, capacity: int | None) -> None:
        """How many instances the cloud can hold in the group (None: unlimited)."""
        self.groups[group].capacity = capacity

    def stall(self, group: GroupId, stalled: bool = True) -> None:
        """Launches in the group stay booting (a cloud that accepted instances it cannot bring
        up); unstalling lets the stuck ones finish their boot from now."""
        fake = self.groups[group]
        fake.stalled = stalled
        if not stalled:
            now = self.clock.monotonic()
            for inst in fake.instances:
                if inst.ready_at == float("inf"):
                    inst.ready_at = now + fake.spec.boot_time_s

    def preempt(
        self, group: GroupId, count: int, notice_s: float = 0.0, *, shrink: bool = False
    ) -> int:
        """Spot interruptions: the ``count`` newest running instances leave (draining for
        ``notice_s``). ``desired`` stays, so the cloud launches replacements, as an Auto
        Scaling group or a MIG does; with ``shrink`` the group's size drops with them instead
        (a cloud that deletes evicted instances from the group), and only the autoscaler's
        next resize replaces them. Returns how many were preempted."""
        now = self.clock.monotonic()
        fake = self.groups[group]
        running = [i for i in self.live(group) if i.ready_at <= now]
        victims = sorted(running, key=lambda i: (i.started_at, i.id))[-count:] if count else []
        for inst in victims:
            inst.draining_until = now + notice_s
        if shrink:
            fake.desired -= len(victims)
        self._reconcile(fake)
        return len(victims)

    def live(self, group: GroupId) -> list[FakeInstance]:
        """Instances not draining, in launch order."""
        return [i for i in self.groups[group].instances if i.draining_until is None]

    # ------------------------------------------------------------------ the contract

    async def start(self) -> None:
        self.calls.append(Call("start", (), at=self.clock.monotonic()))
        await self._before("start", None)
        self.started = True

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        self.calls.append(Call("describe", tuple(groups), at=self.clock.monotonic()))
        await self._before("describe", None)
        result: dict[GroupId, GroupState | ProviderError] = {}
        for gid in groups:
            group = self.groups.get(gid)
            if group is None:
                result[gid] = NotFound("no such group", account=self.account, group=str(gid),
                                       operation="describe")
                continue
            injected = self._errors.get(("describe", gid))
            if injected:
                result[gid] = injected.pop(0)
                continue
            self._reconcile(group)
            result[gid] = self._state(group)
        return result

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        self.calls.append(Call("resize", (group,), target, request_id, self.clock.monotonic()))
        await self._before("resize", group)
        fake = self.groups.get(group)
        if fake is None:
            raise NotFound("no such group", account=self.account, group=str(group),
                           operation="resize")
        if target < 0:
            raise ValueError(f"target must be >= 0, got {target}")
        if fake.refuse is not None:
            raise ERRORS[fake.refuse](f"refused ({fake.refuse})", account=self.account,
                                      group=str(group), operation="resize")
        if self.capacity_mode == "raise" and fake.capacity is not None and target > max(
            fake.capacity, len(self.live(group))
        ):
            raise CapacityUnavailable(
                f"insufficient capacity: {fake.capacity} instances available",
                account=self.account, group=str(group), operation="resize")
        fake.request_ids.append(request_id)
        if target != fake.desired:
            fake.changes += 1
        fake.desired = target
        self._reconcile(fake)

    async def close(self, drain_timeout_s: float) -> None:
        self.calls.append(Call("close", (), at=self.clock.monotonic()))
        self.closed = True

    # ------------------------------------------------------------------ the fake cloud

    async def _before(self, operation: str, group: GroupId | None) -> None:
        delay = self._delays.get((operation, group), self._delays.get((operation, None), 0.0))
        if delay > 0:
            await asyncio.sleep(delay)
        keys = [(operation, group), (operation, None)] if group is not None else [(operation, None)]
        for key in keys:
            queue = self._errors.get(key)
            if queue:
                raise queue.pop(0)

    def _reconcile(self, group: FakeGroup) -> None:
        """Move the group towards ``desired``: reap finished drains, drain victims, launch
        what capacity allows (the rest stays pending)."""
        now = self.clock.monotonic()
        group.instances = [
            i for i in group.instances if i.draining_until is None or i.draining_until > now
        ]
        live = [i for i in group.instances if i.draining_until is None]
        excess = len(live) - group.desired
        if excess > 0:
            ranked = sorted(live, key=lambda i: scale_in_key(
                now < i.ready_at, i.ready_at, i.started_at, i.id))
            for inst in ranked[:excess]:
                inst.draining_until = now + group.drain_s
            group.instances = [
                i for i in group.instances
                if i.draining_until is None or i.draining_until > now
            ]
            return
        room = group.desired - len(live)
        if group.capacity is not None:
            room = min(room, group.capacity - len(live))
        for _ in range(max(0, room)):
            ready = float("inf") if group.stalled else now + group.spec.boot_time_s
            group.instances.append(FakeInstance(next(self._ids), now, ready))

    def _state(self, group: FakeGroup) -> GroupState:
        now = self.clock.monotonic()
        live = [i for i in group.instances if i.draining_until is None]
        booting = sum(1 for i in live if now < i.ready_at)
        pending = max(0, group.desired - len(live))
        short = pending > 0 and group.capacity is not None
        return GroupState(
            name=group.spec.name,
            market=group.spec.market,
            desired=group.desired,
            booting=booting,
            running=len(live) - booting,
            draining=len(group.instances) - len(live),
            pending=pending,
            available=not short,
            reason=f"insufficient capacity: {group.capacity} instances available" if short
            else "",
        )


class FakeProvider:
    """The ``fake`` provider kind; ``clients`` holds every client built, by account name."""

    kind: ClassVar[str] = "fake"
    AccountSettings: ClassVar[type[BaseModel]] = FakeAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = FakeGroupSettings
    clients: ClassVar[dict[str, FakeClient]] = {}

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> FakeClient:
        client = FakeClient(account, groups, clock)
        cls.clients[account.name] = client
        return client
