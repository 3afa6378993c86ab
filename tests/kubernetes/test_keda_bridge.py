"""``autoscaler keda-scaler``: KEDA's external-scaler protocol on 127.0.0.1, queried by a gRPC
client built here from the .proto with grpcio-tools (independently of the committed messages
the server uses), with the pool's fleet described through the kubernetes provider."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc", reason="the `keda` extra is not installed")
protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools is not installed")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

from autoscaler.config.models import parse_config  # noqa: E402
from autoscaler.ports.clock import ManualClock  # noqa: E402
from autoscaler.registry import Registry  # noqa: E402
from autoscaler.runtime.keda.server import KedaBridge, start_server  # noqa: E402
from autoscaler.sources.memory import reset_queue  # noqa: E402
from autoscaler.testing import free_port  # noqa: E402
from tests.kubernetes.fake_api import FakeKubeApi  # noqa: E402

KEDA_DIR = Path(__file__).resolve().parents[2] / "autoscaler" / "runtime" / "keda"
SERVICE = "/externalscaler.ExternalScaler/"


def compile_proto(out: Path, *args: str) -> None:
    code = protoc.main(["protoc", f"-I{KEDA_DIR}", *args, str(KEDA_DIR / "externalscaler.proto")])
    assert code == 0, f"protoc failed with {code}"


class KedaClient:
    """What KEDA does: the four RPCs, with messages from the proto compiled in a private
    descriptor pool (not the server's committed module)."""

    def __init__(self, tmp: Path, port: int) -> None:
        compile_proto(tmp, f"--descriptor_set_out={tmp / 'es.pb'}")
        files = descriptor_pb2.FileDescriptorSet.FromString((tmp / "es.pb").read_bytes())
        pool = descriptor_pool.DescriptorPool()
        for f in files.file:
            pool.Add(f)
        self.msg = {name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"externalscaler.{name}")) for name in (
            "ScaledObjectRef", "IsActiveResponse", "GetMetricSpecResponse",
            "GetMetricsRequest", "GetMetricsResponse")}
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def ref(self, pool: str | None, name: str = "chat-so") -> Any:
        meta = {"pool": pool} if pool is not None else {}
        return self.msg["ScaledObjectRef"](name=name, namespace="serving", scalerMetadata=meta)

    def _call(self, method: str, request: str, response: str, stream: bool = False) -> Any:
        make = self.channel.unary_stream if stream else self.channel.unary_unary
        return make(SERVICE + method, request_serializer=self.msg[request].SerializeToString,
                    response_deserializer=self.msg[response].FromString)

    async def is_active(self, pool: str | None) -> bool:
        reply = await self._call("IsActive", "ScaledObjectRef", "IsActiveResponse")(
            self.ref(pool))
        return bool(reply.result)

    def stream_is_active(self, pool: str) -> Any:
        return self._call("StreamIsActive", "ScaledObjectRef", "IsActiveResponse",
                          stream=True)(self.ref(pool))

    async def metric_spec(self, pool: str) -> list[tuple[str, int, float]]:
        reply = await self._call("GetMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse")(
            self.ref(pool))
        return [(m.metricName, m.targetSize, m.targetSizeFloat) for m in reply.metricSpecs]

    async def metrics(self, pool: str, metric: str) -> list[tuple[str, int, float]]:
        request = self.msg["GetMetricsRequest"](scaledObjectRef=self.ref(pool), metricName=metric)
        reply = await self._call("GetMetrics", "GetMetricsRequest", "GetMetricsResponse")(
            request)
        return [(v.metricName, v.metricValue, v.metricValueFloat) for v in reply.metricValues]


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
      - {{name: k, provider: k8s, market: on-demand, hourly_price: 4.0, namespace: serving,
          deployment: chat}}
"""


@pytest.fixture
async def bridge(
    api: FakeKubeApi, kubeconfig_file: Path, clock: ManualClock,
    registries: dict[str, Registry[Any]], tmp_path: Path,
) -> AsyncIterator[tuple[KedaBridge, KedaClient]]:
    api.add("serving", "deployments", "chat")
    reset_queue("keda-chat")
    config = parse_config(CONFIG.format(kubeconfig=kubeconfig_file, queue="keda-chat"),
                          registries=registries)
    b = KedaBridge(config, registries=registries, clock=clock)
    server, port = await start_server(b, "127.0.0.1:0")
    await b.daemon.start()
    client = KedaClient(tmp_path, port)
    yield b, client
    await client.channel.close()
    await server.stop(grace=None)
    await b.daemon.close(0.0)


async def test_metrics_are_the_guarded_desired_count_and_nothing_is_resized(
    bridge: tuple[KedaBridge, KedaClient], api: FakeKubeApi, clock: ManualClock,
) -> None:
    b, keda = bridge
    queue = reset_queue("keda-chat")
    for _ in range(4):
        queue.put(clock.wall(), 1.0)
    [tick] = await b.tick()
    assert tick.decision is not None and tick.decision.desired == 4 and not tick.acted
    assert await keda.metric_spec("chat") == [("queue-autoscaler-chat", 1, 1.0)]
    assert await keda.metrics("chat", "s0-queue-autoscaler-chat") == [
        ("s0-queue-autoscaler-chat", 4, 4.0)]
    assert await keda.is_active("chat")
    deployment = api.workloads[("serving", "deployments", "chat")]
    assert (deployment.replicas, deployment.patches) == (0, 0)  # KEDA actuates, never us

    # The HPA applies it; the fleet described from the cluster now has 4: nothing changes.
    deployment.replicas = 4
    [tick] = await b.tick()
    assert tick.fleet is not None and tick.fleet.desired == 4
    assert tick.decision is not None and tick.decision.desired == 4 and not tick.changed
    assert await keda.metrics("chat", "m") == [("m", 4, 4.0)]


async def test_errors_name_the_pool_or_the_missing_metadata(
    bridge: tuple[KedaBridge, KedaClient],
) -> None:
    b, keda = bridge
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.is_active("chat")  # before the first tick
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "pool 'chat' has no decision" in str(info.value.details())
    await b.tick()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.metrics("ghost", "m")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == (
        "ScaledObject serving/chat-so: unknown pool 'ghost' (pools in the config: chat)")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.is_active(None)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trigger metadata 'pool' is required" in str(info.value.details())
    assert not await keda.is_active("chat")  # empty queue, min 0: inactive


async def test_stream_is_active_sends_now_then_each_change(
    bridge: tuple[KedaBridge, KedaClient], clock: ManualClock,
) -> None:
    b, keda = bridge
    await b.tick()
    stream = keda.stream_is_active("chat")
    first = await stream.read()
    assert first.result is False
    queue = reset_queue("keda-chat")
    queue.put(clock.wall(), 1.0)
    await b.tick()
    second = await stream.read()
    assert second.result is True
    stream.cancel()


def test_committed_messages_match_the_proto(tmp_path: Path) -> None:
    """The committed ``externalscaler_pb2.py``/``.pyi`` are what grpcio-tools makes of the
    .proto today (``make keda-stubs`` regenerates them)."""
    compile_proto(tmp_path, f"--python_out={tmp_path}", f"--pyi_out={tmp_path}")
    for name in ("externalscaler_pb2.py", "externalscaler_pb2.pyi"):
        assert (tmp_path / name).read_text() == (KEDA_DIR / name).read_text(), (
            f"{name} is stale: run `make keda-stubs`")


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "keda.yaml"
    config.write_text("""
controller: {interval: 1s, drain_timeout: 1s, metrics_address: "127.0.0.1:0"}
pools:
  - name: chat
    queue: {kind: memory, name: cli-chat}
    sla: {max_wait: 2s}
    capacity: {min: 1, max: 4}
    policy: {kind: threshold}
    groups:
      - {name: local, provider: local}
""")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "keda-scaler", "-c", str(config), "--listen",
         f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    keda = KedaClient(tmp_path, port)
    try:
        spec: list[tuple[str, int, float]] = []
        for _ in range(300):  # a bound on a broken server, not a speed assertion
            try:
                spec = await keda.metric_spec("chat")
                break
            except grpc.aio.AioRpcError:
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
        assert spec == [("queue-autoscaler-chat", 1, 1.0)], proc.poll()
        assert await keda.metrics("chat", "m") == [("m", 1, 1.0)]  # capacity.min
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await keda.is_active("ghost")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "'ghost'" in str(
            info.value.details())
    finally:
        await keda.channel.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "keda_scaler_started" in err + out and "keda_scaler_stopped" in err + out


def test_cli_refuses_a_busy_address(tmp_path: Path) -> None:
    import socket

    config = tmp_path / "keda.yaml"
    config.write_text("""
pools:
  - name: chat
    queue: {kind: memory, name: cli-busy}
    sla: {max_wait: 2s}
    capacity: {min: 0, max: 2}
    policy: {kind: threshold}
    groups:
      - {name: local, provider: local}
""")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "autoscaler", "keda-scaler", "-c", str(config), "--listen",
             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"--listen 127.0.0.1:{port}" in done.stderr



async def test_a_pool_whose_ticks_fail_serves_its_last_value_then_unavailable(
    bridge: tuple[KedaBridge, KedaClient], api: FakeKubeApi, clock: ManualClock,
) -> None:
    b, keda = bridge
    queue = reset_queue("keda-chat")
    for _ in range(2):
        queue.put(clock.wall(), 1.0)
    await b.tick()
    await api.stop()  # the cluster's API goes away: the fleet cannot be described
    clock.advance(10)
    [tick] = await b.tick()
    assert tick.decision is None and tick.errors
    assert await keda.metrics("chat", "m") == [("m", 2, 2.0)]  # the last value, still fresh
    clock.advance(b.board.stale_after_s)
    await b.tick()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.metrics("chat", "m")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # KEDA's fallback applies
    details = str(info.value.details())
    assert "last decision is" in details and "describe" in details
