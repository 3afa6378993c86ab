"""The conformance suite against ``local`` with real worker processes.

The boot time runs on a ManualClock; processes are real, so the harness polls describe with a
generous deadline. Victims that must stay draining wait for a ``release`` file, as a worker
finishing an in-flight request would.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.local import LocalAccountSettings, LocalSettings
from autoscaler.providers.local.client import LocalClient
from autoscaler.testing.conformance import CHECKS, Check
from tests.contract.support import poll

WORKER = r"""
import os, pathlib, signal, sys, time
d = pathlib.Path(sys.argv[1])
parent = os.getppid()
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    if os.getppid() != parent:  # the test process died: never outlive it
        sys.exit(4)
    time.sleep(0.02)
while not (d / "release").exists():  # finishing an in-flight request
    time.sleep(0.02)
"""


class LocalHarness:
    boot_time_s = 30.0
    picks_victims = True

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = ManualClock()
        self.clients: list[LocalClient] = []
        (tmp / "worker.py").write_text(WORKER)
        (tmp / "release").touch()

    def _program(self, group: GroupId) -> Path:
        return self.tmp / f"worker-{group.group}"

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        specs = []
        for i in range(groups):
            gid = GroupId("p", f"g{i}")
            program = self._program(gid)
            program.write_text(f"#!/bin/sh\nexec {sys.executable} {self.tmp / 'worker.py'} "
                               f"{self.tmp}\n")
            program.chmod(0o755)
            specs.append(ManagedGroup(gid, Market.ON_DEMAND, LocalSettings(command=(str(program),)),
                                   queue_kind="redis-list", boot_time_s=self.boot_time_s))
        client = LocalClient(AccountSpec("local", "local", LocalAccountSettings()), specs,
                             self.clock)
        self.clients.append(client)
        await client.start()
        return client, [s.id for s in specs]

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def hold_victims(self, hold: bool) -> None:
        release = self.tmp / "release"
        if hold:
            release.unlink(missing_ok=True)
        else:
            release.touch()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        program = self._program(group)
        mode = program.stat().st_mode
        executable = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        program.chmod(mode & ~executable if failing else mode | executable)

    async def live_ids(self, group: GroupId) -> list[str]:
        instances = self.clients[-1].groups[group]._instances.values()
        return [str(i.id) for i in sorted(instances, key=lambda i: i.id) if not i.draining]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=20.0)

    async def close(self) -> None:
        await self.hold_victims(False)
        for client in self.clients:
            await client.close(10.0)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[LocalHarness]:
    h = LocalHarness(tmp_path)
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_local_conforms(check: Check, harness: LocalHarness) -> None:
    await check(harness)
