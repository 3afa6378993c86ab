"""The kubernetes adapter through the real kubernetes-asyncio client against the fake API
server: pending timeout, error mapping, credentials kept out of logs, and daemon ticks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.errors import (
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.kubernetes import (
    KubernetesAccountSettings,
    KubernetesGroupSettings,
    KubernetesProvider,
)
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.sources.memory import reset_queue
from tests.kubernetes.conftest import TOKEN
from tests.kubernetes.fake_api import UNSCHEDULABLE_MESSAGE, FakeKubeApi

SPOT = GroupId("p", "spot")


async def state_of(client: Any, gid: GroupId = SPOT) -> GroupState:
    result = (await client.describe([gid]))[gid]
    assert isinstance(result, GroupState), result
    return result


async def test_unschedulable_pods_are_pending_then_unavailable_after_the_timeout(
    api: FakeKubeApi, open_client: Callable[..., Any], clock: ManualClock,
) -> None:
    w = api.add("serving", "deployments", "vllm")
    w.capacity = 0  # no GPU node: the scheduler cannot place the pods
    client = await open_client([("spot", {"namespace": "serving", "deployment": "vllm",
                                          "pending_timeout": "2m"})], Market.SPOT)
    await client.resize(SPOT, 2, "r1")
    s = await state_of(client)
    assert (s.desired, s.pending, s.booting, s.running) == (2, 2, 0, 0)
    assert s.available and s.current == 2
    clock.advance(119)
    assert (await state_of(client)).available  # not yet past the timeout
    clock.advance(1)
    s = await state_of(client)
    assert not s.available and s.pending == 2
    assert UNSCHEDULABLE_MESSAGE in s.reason and "serving/deployments/vllm" in s.reason
    w.capacity = None  # a GPU node joined: the pods are scheduled, then boot
    s = await state_of(client)
    assert s.available and (s.pending, s.booting) == (0, 2)
    clock.advance(30)
    assert (await state_of(client)).running == 2


async def test_terminating_pods_are_draining_and_not_desired(
    api: FakeKubeApi, open_client: Callable[..., Any], clock: ManualClock,
) -> None:
    api.add("serving", "statefulsets", "db", replicas=3, boot_time_s=0)
    client = await open_client([("spot", {"namespace": "serving", "statefulset": "db"})])
    assert (await state_of(client)).running == 3
    api.hold_terminating = True  # the pods' preStop hooks are still running
    await client.resize(SPOT, 1, "r2")
    s = await state_of(client)
    assert (s.desired, s.running, s.draining, s.current) == (1, 1, 2, 1)
    api.hold_terminating = False
    s = await state_of(client)
    assert (s.desired, s.running, s.draining) == (1, 1, 0)


@pytest.mark.parametrize(("status", "headers", "error", "retry_after"), [
    (429, {"Retry-After": "7"}, Throttled, 7.0),
    (429, {}, Throttled, None),
    (401, {}, Denied, None),
    (403, {}, Denied, None),
    (404, {}, NotFound, None),
    (409, {}, Conflict, None),
    (500, {}, Transient, None),
    (503, {}, Transient, None),
])
@pytest.mark.parametrize("operation", ["describe", "resize"])
async def test_api_errors_map_to_one_class(
    api: FakeKubeApi, open_client: Callable[..., Any], operation: str, status: int,
    headers: dict[str, str], error: type[ProviderError], retry_after: float | None,
) -> None:
    api.add("serving", "deployments", "vllm")
    client = await open_client([("spot", {"namespace": "serving", "deployment": "vllm"})])
    api.fail_next(status, headers=headers)
    with capture_logs() as logs:
        if operation == "describe":
            exc = (await client.describe([SPOT]))[SPOT]
        else:
            with pytest.raises(ProviderError) as info:
                await client.resize(SPOT, 3, "r3")
            exc = info.value
    assert type(exc) is error, exc
    assert isinstance(exc.__cause__, Exception)  # chained with `from`
    assert exc.account == "k8s" and exc.group == "p/spot" and exc.operation == operation
    assert f"HTTP {status}: injected {status}" in str(exc)
    if isinstance(exc, Throttled):
        assert exc.retry_after_s == retry_after
    assert TOKEN not in str(exc) and TOKEN not in repr(logs)
    assert api.workloads[("serving", "deployments", "vllm")].replicas == 0  # nothing applied


async def test_unknown_workload_is_not_found_and_a_down_server_transient(
    api: FakeKubeApi, open_client: Callable[..., Any],
) -> None:
    client = await open_client([("spot", {"namespace": "serving", "deployment": "ghost"})])
    exc = (await client.describe([SPOT]))[SPOT]
    assert isinstance(exc, NotFound) and 'deployments.apps "ghost" not found' in str(exc)
    await api.stop()
    exc = (await client.describe([SPOT]))[SPOT]
    assert isinstance(exc, Transient) and exc.operation == "describe"
    with pytest.raises(Transient):
        await client.resize(SPOT, 1, "r4")


async def test_credentials_are_used_but_never_shown(
    api: FakeKubeApi, open_client: Callable[..., Any], kubeconfig_file: Path,
    clock: ManualClock,
) -> None:
    api.add("serving", "deployments", "vllm")
    with capture_logs() as logs:
        client = await open_client([("spot", {"namespace": "serving", "deployment": "vllm"})])
        await client.resize(SPOT, 1, "r5")
        await state_of(client)
    assert api.auth_headers and set(api.auth_headers) == {f"Bearer {TOKEN}"}
    assert [e["event"] for e in logs] == ["kubernetes_connected", "kubernetes_scaled"]
    assert TOKEN not in repr(logs)
    # A context that the kubeconfig does not have: Denied at start, naming it, no token.
    account = AccountSpec("k8s", "kubernetes", KubernetesAccountSettings(
        kubeconfig=str(kubeconfig_file), context="prod"))
    group = ManagedGroup(SPOT, Market.SPOT, KubernetesGroupSettings(
        namespace="serving", deployment="vllm"))
    broken = KubernetesProvider.client(account, [group], clock)
    with pytest.raises(Denied) as info:
        await broken.start()
    assert "prod" in str(info.value) and TOKEN not in str(info.value)


def test_group_settings_are_checked_with_the_field() -> None:
    for bad, field in [
        ({"namespace": "serving"}, "exactly one of `deployment` or `statefulset`"),
        ({"namespace": "serving", "deployment": "a", "statefulset": "b"}, "exactly one"),
        ({"namespace": "Serving", "deployment": "a"}, "not a namespace name"),
        ({"namespace": "serving", "deployment": "A_b"}, "not a workload name"),
        ({"namespace": "serving", "deployment": "a", "pending_timeout": "soon"},
         "invalid duration"),
        ({"namespace": "serving", "deployment": "a", "asg": "x"}, "Extra inputs"),
    ]:
        with pytest.raises(ValueError, match=field):
            KubernetesGroupSettings.model_validate(bad)
    assert KubernetesGroupSettings(namespace="s", deployment="a").pending_timeout == 300.0


CONFIG = """
controller: {{interval: 1s, drain_timeout: 1s}}
providers:
  k8s: {{kind: kubernetes, kubeconfig: {kubeconfig}, context: test}}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 10, boot_time: 30s}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: k8s, market: spot, hourly_price: 1.2, namespace: serving,
          deployment: chat-spot, pending_timeout: 1m}}
      - {{name: od, provider: k8s, market: on-demand, hourly_price: 4.0, namespace: serving,
          statefulset: chat-od}}
"""


async def test_daemon_tick_resizes_and_moves_an_unschedulable_shortfall_to_the_next_group(
    api: FakeKubeApi, kubeconfig_file: Path, clock: ManualClock,
    registries: dict[str, Registry[Any]],
) -> None:
    spot = api.add("serving", "deployments", "chat-spot")
    od = api.add("serving", "statefulsets", "chat-od")
    spot.capacity = 0  # the GPU node pool for spot has no node
    queue = reset_queue("k8s-chat")
    for _ in range(4):
        queue.put(clock.wall(), 1.0)
    config = parse_config(CONFIG.format(kubeconfig=kubeconfig_file, queue="k8s-chat"),
                          registries=registries)
    daemon = Daemon.build(config, registries=registries, clock=clock)
    await daemon.start()
    try:
        [first] = await daemon.loop.tick()
        assert first.decision is not None and dict(first.decision.targets) == {"spot": 4, "od": 0}
        await daemon.loop.settle()
        assert (spot.replicas, spot.patches, od.patches) == (4, 1, 0)  # one PATCH, spot first

        # The pods are first seen unschedulable here, at t=30 (the first describe was before
        # the resize): pending, not yet for pending_timeout, so nothing moves.
        clock.advance(30)
        [second] = await daemon.loop.tick()
        await daemon.loop.settle()
        assert second.fleet is not None and second.fleet.group("spot") == GroupState(
            "spot", Market.SPOT, desired=4, booting=0, running=0, pending=4)
        assert (spot.replicas, od.replicas) == (4, 0)

        clock.advance(60)  # seen unschedulable for 1m: the shortfall lands on od in this tick
        with capture_logs() as logs:
            [third] = await daemon.loop.tick()
            await daemon.loop.settle()
        assert third.fleet is not None
        group = third.fleet.group("spot")
        assert group is not None and not group.available and "nvidia.com/gpu" in group.reason
        assert third.decision is not None
        targets = dict(third.decision.targets)
        assert targets["spot"] == 0 and targets["od"] >= 4
        assert (spot.replicas, od.replicas) == (0, targets["od"])
        [event] = [e for e in logs if e["event"] == "group_unavailable"]
        assert event["group"] == "chat/spot" and "Insufficient nvidia.com/gpu" in event["error"]
        assert TOKEN not in repr(logs)
    finally:
        await daemon.close(0.0)


def test_a_missing_sdk_is_refused_naming_the_extra(tmp_path: Path) -> None:
    """`validate` and `run` refuse a kubernetes group when kubernetes-asyncio is absent (a
    fresh interpreter where the module is blocked, as an uninstalled one would be)."""
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(kubeconfig=tmp_path / "kc", queue="q"))
    script = ("import sys; sys.modules['kubernetes_asyncio'] = None\n"
              "from autoscaler.cli import main\n"
              f"main(['validate', {str(config)!r}])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'queue-autoscaler[kubernetes]'" in done.stdout + done.stderr


async def test_a_burst_of_429_is_retried_after_retry_after_and_applied_once(
    api: FakeKubeApi, kubeconfig_file: Path, registries: dict[str, Registry[Any]],
) -> None:
    """Three throttled PATCHes, then accepted: one change, one scale action, each retry at
    least Retry-After later (the daemon's loop clock; small values keep the test short)."""
    from autoscaler.runtime.actuator import RetryPolicy
    from autoscaler.runtime.metrics import PrometheusTelemetry

    spot = api.add("serving", "deployments", "chat-spot")
    api.add("serving", "statefulsets", "chat-od")
    queue = reset_queue("k8s-429")
    for _ in range(3):
        queue.put(0.0, 1.0)
    config = parse_config(CONFIG.format(kubeconfig=kubeconfig_file, queue="k8s-429"),
                          registries=registries)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, telemetry=telemetry)
    daemon.loop.retry = RetryPolicy(base_s=0.01, cap_s=0.02)
    await daemon.start()
    try:
        [first] = await daemon.loop.tick()
        assert first.decision is not None and first.decision.targets["spot"] == 3
        api.fail_next(429, count=3, headers={"Retry-After": "0.05"})
        with capture_logs() as logs:
            await daemon.loop.settle()
        failed = [e for e in logs if e["event"] == "resize_failed"]
        assert [e["error_class"] for e in failed] == ["throttled"] * 3
        assert all(e["retry_in_s"] >= 0.05 for e in failed)
        patches = [r for r in api.requests if r[0] == "PATCH"]
        assert len(patches) == 4 and (spot.replicas, spot.patches) == (3, 1)
        [second] = await daemon.loop.tick()  # the fleet now says 3: nothing more to do
        await daemon.loop.settle()
        assert not second.changed and spot.patches == 1
        assert telemetry.registry.get_sample_value(
            "autoscaler_scale_actions_total", {"pool": "chat", "direction": "up"}) == 1
    finally:
        await daemon.close(0.0)


async def test_the_shipped_role_grants_exactly_what_the_client_calls(
    api: FakeKubeApi, open_client: Callable[..., Any],
) -> None:
    """deploy/kubernetes/base/rbac.yaml grants get+patch on the scale subresources and list on pods,
    nothing more (least privilege), and that is exactly what describe and resize use."""
    import yaml

    api.add("serving", "deployments", "d")
    api.add("serving", "statefulsets", "s")
    client = await open_client([("spot", {"namespace": "serving", "deployment": "d"}),
                                ("od", {"namespace": "serving", "statefulset": "s"})])
    for gid in (SPOT, GroupId("p", "od")):
        await client.resize(gid, 1, "r")
        await state_of(client, gid)
    verbs = {"GET": "get", "PATCH": "patch"}
    used = set()
    for method, path in api.requests:
        parts = path.strip("/").split("/")
        if parts[0] == "api":  # /api/v1/namespaces/NS/pods
            used.add(("", parts[4], "list"))
        else:  # /apis/apps/v1/namespaces/NS/RESOURCE/NAME/scale
            used.add(("apps", f"{parts[5]}/{parts[7]}", verbs[method]))
    root = Path(__file__).resolve().parents[2]
    docs = list(yaml.safe_load_all((root / "deploy/kubernetes/base/rbac.yaml").read_text()))
    [role] = [d for d in docs if d["kind"] == "Role"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert granted == used
    keda = yaml.safe_load((root / "deploy/kubernetes/keda-scaledobject.yaml").read_text())
    [trigger] = keda["spec"]["triggers"]
    assert trigger["type"] == "external" and trigger["metadata"]["pool"] == "chat"
