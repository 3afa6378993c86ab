"""The provider conformance suite against the kubernetes adapter, through the real
kubernetes-asyncio client and a fake API server that follows the published REST shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.kubernetes import (
    KubernetesAccountSettings,
    KubernetesGroupSettings,
    KubernetesProvider,
)
from autoscaler.testing.conformance import CHECKS, Check
from tests.contract.support import poll
from tests.kubernetes.fake_api import FakeKubeApi


class KubeHarness:
    boot_time_s = 30.0
    picks_victims = False  # the ReplicaSet controller picks, not the adapter

    def __init__(self, api: FakeKubeApi, kubeconfig: Path, clock: ManualClock,
                 resource: str) -> None:
        self.api, self.kubeconfig, self.clock, self.resource = api, kubeconfig, clock, resource
        self.clients: list[AccountClient] = []
        self._names: dict[GroupId, tuple[str, str, str]] = {}

    async def open(self, groups: int) -> tuple[AccountClient, Sequence[GroupId]]:
        key = "deployment" if self.resource == "deployments" else "statefulset"
        specs = []
        for i in range(groups):
            name = f"w{len(self._names)}"
            self.api.add("serving", self.resource, name, boot_time_s=self.boot_time_s)
            gid = GroupId("p", f"g{i}")
            self._names[gid] = ("serving", self.resource, name)
            # pending_timeout 0: a pod that cannot be scheduled makes the group unavailable at
            # the first describe (the timeout itself is tested in test_provider.py).
            specs.append(ManagedGroup(gid, Market.SPOT, KubernetesGroupSettings(
                namespace="serving", pending_timeout=0, **{key: name})))
        account = AccountSpec("k8s", "kubernetes", KubernetesAccountSettings(
            kubeconfig=str(self.kubeconfig)))
        client = KubernetesProvider.client(account, specs, self.clock)
        await client.start()
        self.clients.append(client)
        return client, [s.id for s in specs]

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def hold_victims(self, hold: bool) -> None:
        self.api.hold_terminating = hold
        self.api.reconcile_all()

    async def fail_launches(self, group: GroupId, failing: bool) -> None:
        self.api.workloads[self._names[group]].capacity = 0 if failing else None

    async def live_ids(self, group: GroupId) -> list[str]:
        w = self.api.workloads[self._names[group]]
        self.api.reconcile_all()
        return [p.name for p in self.api.live(w)]

    async def eventually(self, client: AccountClient, group: GroupId,
                         ok: Callable[[GroupState], bool], what: str) -> GroupState:
        return await poll(client, group, ok, what, deadline_s=5.0)

    async def close(self) -> None:
        for c in self.clients:
            await c.close(0.0)


@pytest.fixture(params=["deployments", "statefulsets"])
async def harness(request: pytest.FixtureRequest, api: FakeKubeApi, kubeconfig_file: Path,
                  clock: ManualClock) -> AsyncIterator[KubeHarness]:
    h = KubeHarness(api, kubeconfig_file, clock, request.param)
    yield h
    await h.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_kubernetes_conforms(check: Check, harness: KubeHarness) -> None:
    await check(harness)
