"""``autoscaler keda-scaler``: the tick loop decides, KEDA actuates.

The daemon is built from the same config as ``autoscaler run`` and runs the same tick loop
(sample the queues, describe the groups, the pure decision core with its guards), behind a
gate that is always closed: this process never resizes anything. Each tick publishes every
pool's GUARDED desired instance count (``Decision.desired``) on a ``DesiredBoard``; the gRPC
service answers KEDA from it:

- ``GetMetricSpec``: one metric ``queue-autoscaler-<pool>`` with a target of 1 per replica;
- ``GetMetrics``: its value is the desired count, so the HPA's ``ceil(value / target)`` is it;
- ``IsActive`` / ``StreamIsActive``: desired > 0 (KEDA scales from and to zero on it).

A ScaledObject picks its pool with the trigger metadata ``pool: NAME``.

Where the fleet's current size comes from: the scaled object's replicas are not in KEDA's
requests, so each pool's groups are DESCRIBED through their providers, read-only, exactly as
the daemon would: give the pool one ``kubernetes`` group naming the Deployment (or
StatefulSet) that the ScaledObject targets, and ``current``/booting/running are the cluster's
(``spec.replicas`` as the HPA set it, pods by readiness). A decision that changes the size is
recorded as carried out (the guards' rate rules count it) when it is first published, since
the HPA applies it on its next sync; it is recorded once per published change.

Not guaranteed: the HPA has its own ``behavior`` (stabilization, rates) and min/max on top of
ours, so the replica count KEDA sets can lag or differ from the value served; the bridge has
no TLS (serve it inside the cluster, behind a NetworkPolicy); a pool whose ticks keep failing
answers ``UNAVAILABLE`` after ``stale_after`` so KEDA's ``fallback`` applies.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import Message

from autoscaler.config.models import Config
from autoscaler.ports.clock import Clock
from autoscaler.registry import Registry
from autoscaler.runtime.app import EXIT_FAILED, EXIT_OK, Daemon
from autoscaler.runtime.keda import externalscaler_pb2 as pb
from autoscaler.runtime.keda.board import DesiredBoard, NotDecided, PoolNotFound
from autoscaler.runtime.loop import PoolTick
from autoscaler.runtime.supervisor import Supervisor

log = structlog.get_logger("autoscaler.keda")

SERVICE = "externalscaler.ExternalScaler"
METRIC_PREFIX = "queue-autoscaler-"
POOL_KEY = "pool"

M = TypeVar("M", bound=Message)


class ClosedGate:
    """KEDA actuates: the bridge's loop never resizes a group."""

    def is_open(self) -> bool:
        return False

    @property
    def why_closed(self) -> str:
        return "keda"


def metric_name(pool: str) -> str:
    return METRIC_PREFIX + pool


class KedaBridge:
    """The daemon's loop behind a closed gate, publishing each tick's decisions."""

    def __init__(
        self, config: Config, *, registries: dict[str, Registry[Any]] | None = None,
        clock: Clock | None = None, stale_after_s: float | None = None,
    ) -> None:
        self.daemon = Daemon.build(config, registries=registries, clock=clock, gate=ClosedGate())
        interval = config.controller.interval
        self.board = DesiredBoard([p.name for p in config.pools],
                                  stale_after_s or max(30.0, 3 * interval))
        self.clock = self.daemon.loop.clock

    async def tick(self) -> list[PoolTick]:
        """One tick of the loop, then publish (tests drive ticks with this)."""
        results = await self.daemon.loop.tick()
        self.publish(results)
        return results

    def publish(self, results: list[PoolTick]) -> None:
        now = self.clock.monotonic()
        runtimes = {rt.name: rt for rt in self.daemon.loop.pools}
        for result in results:
            decision = result.decision
            if decision is None:
                self.board.failed(result.pool, "; ".join(result.errors) or "not decided")
                continue
            changed = self.board.publish(result.pool, decision.desired, now,
                                               decision.reason)
            if changed and result.changed:  # the HPA will carry it out: the guards count it
                rt = runtimes[result.pool]
                rt.state = rt.controller.applied(rt.state, decision)
            if changed:
                log.info("keda_desired", pool=result.pool, desired=decision.desired,
                         current=decision.current, reason=decision.reason)


# ---------------------------------------------------------------------- the gRPC service


class ExternalScalerService:
    """The four RPCs of KEDA's ``ExternalScaler``, answered from the board."""

    def __init__(self, board: DesiredBoard, clock: Clock) -> None:
        self.board = board
        self.clock = clock

    async def _desired(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
                       ) -> tuple[str, int]:
        where = f"ScaledObject {ref.namespace}/{ref.name}"
        pool = ref.scalerMetadata.get(POOL_KEY, "")
        if not pool:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{where}: trigger metadata {POOL_KEY!r} is required")
        try:
            return pool, self.board.desired(pool, self.clock.monotonic())
        except PoolNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{where}: {exc}")
        except NotDecided as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{where}: {exc}")
        raise AssertionError("unreachable: abort raises")

    async def is_active(self, request: pb.ScaledObjectRef,
                        context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        _pool, desired = await self._desired(request, context)
        return pb.IsActiveResponse(result=desired > 0)

    async def stream_is_active(self, request: pb.ScaledObjectRef,
                               context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[pb.IsActiveResponse]:
        """The current state at once, then each change of it, until KEDA hangs up."""
        version = self.board.version
        _pool, desired = await self._desired(request, context)
        active = desired > 0
        yield pb.IsActiveResponse(result=active)
        while True:
            version = await self.board.wait_change(version)
            _pool, desired = await self._desired(request, context)
            if (desired > 0) != active:
                active = desired > 0
                yield pb.IsActiveResponse(result=active)

    async def get_metric_spec(self, request: pb.ScaledObjectRef,
                              context: grpc.aio.ServicerContext) -> pb.GetMetricSpecResponse:
        pool, _desired = await self._desired(request, context)
        return pb.GetMetricSpecResponse(metricSpecs=[
            pb.MetricSpec(metricName=metric_name(pool), targetSize=1, targetSizeFloat=1.0)])

    async def get_metrics(self, request: pb.GetMetricsRequest,
                          context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        pool, desired = await self._desired(request.scaledObjectRef, context)
        name = request.metricName or metric_name(pool)
        return pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=name, metricValue=desired,
                           metricValueFloat=float(desired))])

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[..., Any], request: type[M], response: type[Message]) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString,
                response_serializer=response.SerializeToString)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "IsActive": unary(self.is_active, pb.ScaledObjectRef, pb.IsActiveResponse),
            "StreamIsActive": grpc.unary_stream_rpc_method_handler(
                self.stream_is_active, request_deserializer=pb.ScaledObjectRef.FromString,
                response_serializer=pb.IsActiveResponse.SerializeToString),
            "GetMetricSpec": unary(self.get_metric_spec, pb.ScaledObjectRef,
                                   pb.GetMetricSpecResponse),
            "GetMetrics": unary(self.get_metrics, pb.GetMetricsRequest, pb.GetMetricsResponse),
        })


async def start_server(bridge: KedaBridge, listen: str) -> tuple[grpc.aio.Server, int]:
    """The gRPC server on ``listen`` (``HOST:PORT``; port 0 picks one); the bound port.

    Raises ``OSError`` naming the address when it cannot listen."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ExternalScalerService(bridge.board, bridge.clock).handler(),))
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:  # grpcio raises this when the address cannot be bound
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port


async def serve_keda(
    config: Config, listen: str, *, registries: dict[str, Registry[Any]] | None = None,
    install_signals: bool = True, supervisor: Supervisor | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> int:
    """``autoscaler keda-scaler``: serve until a signal; the exit code."""
    bridge = KedaBridge(config, registries=registries)
    try:
        server, port = await start_server(bridge, listen)
    except OSError as exc:
        print(f"error: --listen {listen}: {exc}", file=sys.stderr)
        await bridge.daemon.close(0.0)
        return EXIT_FAILED
    sup = supervisor or Supervisor()
    if install_signals:
        sup.install_signal_handlers()
    log.info("keda_scaler_started", listen=listen, port=port,
             pools=[p.name for p in config.pools], interval_s=config.controller.interval)
    if on_listening is not None:
        on_listening(port)
    try:
        await bridge.daemon.start()
        sup.spawn("control-loop", bridge.daemon.loop.run(sup.stop, bridge.publish))
        await sup.stop.wait()
    finally:
        await server.stop(grace=1.0)
        await sup.drain(config.controller.drain_timeout)
        await bridge.daemon.close(config.controller.drain_timeout)
        if install_signals:
            sup.remove_signal_handlers()
    log.info("keda_scaler_stopped", failure=sup.failure)
    return EXIT_FAILED if sup.failure else EXIT_OK
