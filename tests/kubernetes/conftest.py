"""A fake API server on 127.0.0.1 and a kubeconfig pointing the real client at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from autoscaler.core.model import Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.kubernetes import (
    KubernetesAccountSettings,
    KubernetesGroupSettings,
    KubernetesProvider,
)
from autoscaler.providers.kubernetes.client import KubernetesClient
from tests.kubernetes.fake_api import FakeKubeApi, kubeconfig

pytest.importorskip("kubernetes_asyncio", reason="the `kubernetes` extra is not installed")

TOKEN = "sEcReT-bearer-token-0123456789"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def api(clock: ManualClock) -> AsyncIterator[FakeKubeApi]:
    fake = FakeKubeApi(clock)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def kubeconfig_file(api: FakeKubeApi, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig(api.url, TOKEN))
    return path


OpenClient = Callable[[Sequence[tuple[str, dict[str, object]]]], KubernetesClient]


@pytest.fixture
async def open_client(
    kubeconfig_file: Path, clock: ManualClock
) -> AsyncIterator[Callable[..., object]]:
    clients: list[KubernetesClient] = []

    async def make(groups: Sequence[tuple[str, dict[str, object]]],
                   market: Market = Market.ON_DEMAND) -> KubernetesClient:
        account = AccountSpec("k8s", "kubernetes", KubernetesAccountSettings(
            kubeconfig=str(kubeconfig_file), context="test"))
        specs = [ManagedGroup(GroupId("p", name), market,
                              KubernetesGroupSettings.model_validate(settings))
                 for name, settings in groups]
        client = KubernetesProvider.client(account, specs, clock)
        await client.start()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close(0.0)
