"""The conformance suite against the simulator's fleet (``simulations/fleet.py``).

``SimFleetClient`` is the thin account client a provider would be: describe reads
``SimFleet.state``; resize sets a group's desired size and reconciles, as the simulator's loop
does. Victims held draining are instances with a request in flight on every slot.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from autoscaler.config.models import GroupSimulation, StockoutWindow
from autoscaler.core.model import GroupState
from autoscaler.ports.errors import NotFound, ProviderError
from autoscaler.ports.provider import AccountClient, GroupId
from autoscaler.registry import Registry
from autoscaler.simulations.fleet import SimFleet
from autoscaler.testing.conformance import CHECKS, Check
from tests.contract.support import poll
from tests.sim_support import pool_config

BOOT_S = 30.0


class SimFleetClient:
    """An account client over one simulated pool's fleet; ``t`` is its clock."""

    def __init__(self, fleet: SimFleet, pool: str) -> None:
        self.fleet = fleet
        self.pool = pool
        self.t = 0.0
        self.index = {GroupId(pool, g.config.name): i for i, g in enumerate(fleet.groups)}

    async def start(self) -> None:
        return None

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        self.fleet.reap(self.t)
        state = self.fleet.state(self.t)
        result: dict[GroupId, GroupState | ProviderError] = {}
        for gid in groups:
            found = state.group(gid.group) if gid in self.index else None
            result[gid] = found if found is not None else NotFound(
                "no such group", group=str(gid), operation="describe")
        return result

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        index = self.index[group]
        self.fleet.groups[index].desired = target
        self.fleet.reconcile(index, self.t)

    async def close(self, drain_timeout_s: float) -> None:
        self.fleet.close(self.t)


class SimHarness:
    boot_time_s = BOOT_S
    picks_victims = True

    def __init__(self, registries: dict[str, Registry[Any]]) -> None:
        self.registries = registries
        self.client: SimFleetClient | None = None
        self.hold = False

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        body = (
            "sla: {max_wait: 2s}\n"
            f"capacity: {{max: 10, slots_per_instance: 2, boot_time: {BOOT_S}s}}\n"
            "groups:\n"
            + "".join(f"  - {{name: g{i}, provider: local, market: spot}}\n"
                      for i in range(groups))
        )
        pool = pool_config(self.registries, body)
        self.client = SimFleetClient(SimFleet(pool, seed=0), pool.name)
        return self.client, list(self.client.index)

    async def advance(self, seconds: float) -> None:
        assert self.client is not None
        self.client.t += seconds
        self._busy()

    def _busy(self) -> None:
        """While held, every slot of every running instance serves a request for a long time
        (so a victim drains until released)."""
        assert self.client is not None
        fleet, t = self.client.fleet, self.client.t
        for inst in fleet.instances.values():
            s = fleet.slots
            if self.hold and not inst.draining and inst.ready <= t:
                fleet.slot_until[inst.index * s:(inst.index + 1) * s] = t + 1e6
                fleet.slot_req[inst.index * s:(inst.index + 1) * s] = 1
            elif not self.hold:
                fleet.slot_until[inst.index * s:(inst.index + 1) * s] = 0.0
                if inst.draining and math.isfinite(inst.ends):
                    inst.ends = min(inst.ends, t)

    async def hold_victims(self, hold: bool) -> None:
        self.hold = hold
        self._busy()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        assert self.client is not None
        runtime = self.client.fleet.groups[self.client.index[group]]
        windows = (StockoutWindow(start=self.client.t, end=1e9),) if failing else ()
        runtime.config = runtime.config.model_copy(
            update={"simulation": GroupSimulation(stockouts=windows)})

    async def live_ids(self, group: GroupId) -> list[str]:
        assert self.client is not None
        fleet = self.client.fleet
        members = self.client.fleet.groups[self.client.index[group]].members
        live = [fleet.instances[i] for i in members if not fleet.instances[i].draining]
        return [str(i.uid) for i in sorted(live, key=lambda i: i.uid)]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=1.0)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close(0.0)


@pytest.fixture
async def harness(registries: dict[str, Registry[Any]]) -> AsyncIterator[SimHarness]:
    h = SimHarness(registries)
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_simulator_fleet_conforms(check: Check, harness: SimHarness) -> None:
    await check(harness)
