"""``autoscaler worker``: the inference-worker emulator (see ``autoscaler.emulator.worker``).

Logs JSON lines on stderr. Serves ``--slots`` requests at once (default: the environment
variable ``AUTOSCALER_SLOTS``, which the ``local`` provider sets to the pool's
``capacity.slots_per_instance``; else 1). Exits 0 after SIGTERM or SIGINT once every request in
progress is finished and recorded; 2 on bad arguments; 1 after logging ``worker_failed`` when
the queue cannot be served (e.g. the key holds another type): a supervisor should see that, not
a loop.

Every worker keeps a heartbeat (``--heartbeat`` seconds of TTL) and reclaims the requests of
workers whose heartbeat expired (see ``autoscaler.sources.redis.reclaim``), so a SIGKILL or an
OOM never strands a request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import click
import structlog

from autoscaler.emulator.queues import KINDS, ListQueue, Queue, StreamQueue, ZsetQueue
from autoscaler.emulator.worker import Worker, slot_consumers
from autoscaler.ports.redis_urls import redact_url, redis_url_kind, validate_redis_url
from autoscaler.runtime.logs import LEVELS, configure_logging
from autoscaler.sources.redis.connect import redis_client
from autoscaler.sources.redis.reclaim import Membership, ReclaimKind
from autoscaler.sources.redis.settings import plain_name


def _checked(value: str, param: str, check: object) -> str:
    try:
        return check(value)  # type: ignore[operator, no-any-return]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


@click.command("worker")
@click.option(
    "--url", required=True, envvar="AUTOSCALER_QUEUE_URL", show_envvar=True,
    help="redis://[user:password@]host[:port][/db]; prefer the environment variable, which "
    "the local provider sets to the pool's queue URL: argv is readable by any local user",
)
@click.option("--kind", type=click.Choice(KINDS), required=True, help="queue kind")
@click.option("--key", required=True, help="the queue's Redis key")
@click.option("--group", default=None, help="consumer group (redis-stream only, required there)")
@click.option(
    "--service-time", type=click.FloatRange(min=0), default=0.1, show_default=True,
    help="seconds per request when the payload has no service_s",
)
@click.option(
    "--slots", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
    envvar="AUTOSCALER_SLOTS", show_envvar=True,
    help="requests served at once (each slot is consumer NAME/i when there are several)",
)
@click.option("--consumer", default=None, help="consumer name [default: HOSTNAME-PID]")
@click.option(
    "--block", type=click.FloatRange(min=0.01, max=60), default=0.5, show_default=True,
    help="seconds a pop waits for work: the worst-case delay to notice a stop",
)
@click.option(
    "--heartbeat", type=click.FloatRange(min=0.1, max=3600), default=30.0, show_default=True,
    help="TTL in seconds of this worker's alive key (renewed every third of it); a worker "
    "silent this long is presumed dead and its request is served by another",
)
@click.option("--log-level", type=click.Choice(list(LEVELS)), default="info", show_default=True)
def worker(
    url: str, kind: str, key: str, group: str | None, service_time: float, slots: int,
    consumer: str | None, block: float, heartbeat: float, log_level: str,
) -> None:
    """Consume a Redis queue like an inference server would, serving by sleeping."""
    _checked(url, "--url", validate_redis_url)
    if redis_url_kind(url) == "cluster":  # its scripts take keys as arguments (reclaim)
        raise click.BadParameter("Redis Cluster is not supported by the worker (the sources "
                                 "sample it; workers need standalone or Sentinel)",
                                 param_hint="--url")
    _checked(key, "--key", lambda v: plain_name(v, "key"))
    if kind == "redis-stream":
        if not group:
            raise click.BadParameter("is required with --kind redis-stream", param_hint="--group")
        _checked(group, "--group", lambda v: plain_name(v, "group"))
    elif group is not None:
        raise click.BadParameter("applies to --kind redis-stream only", param_hint="--group")
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    _checked(name, "--consumer", lambda v: plain_name(v, "consumer"))
    configure_logging(log_level)
    structlog.contextvars.bind_contextvars(kind=kind, key=key, consumer=name)
    try:
        asyncio.run(
            _serve(url, kind, key, group or "", name, slots, service_time, block, heartbeat)
        )
    except Exception as exc:  # one clear line for the supervisor's log, then a non-zero exit
        structlog.get_logger("autoscaler.emulator.worker").error(
            "worker_failed", error=str(exc), error_type=type(exc).__name__
        )
        raise SystemExit(1) from None


def _queue(client: object, kind: str, key: str, group: str, consumer: str,
           service_s: float) -> Queue:
    if kind == "redis-list":
        return ListQueue(client, key, consumer, service_s)
    if kind == "redis-zset":
        return ZsetQueue(client, key, consumer, service_s)
    return StreamQueue(client, key, group, consumer, service_s)


async def _serve(
    url: str, kind: str, key: str, group: str, consumer: str, slots: int, service_s: float,
    block_s: float, heartbeat_s: float,
) -> None:

    # One connection per slot blocks in BLMOVE/XREADGROUP at a time; the pool grows to that.
    client = redis_client(url, socket_connect_timeout=5.0)
    reclaim_kind: ReclaimKind = (
        "list" if kind == "redis-list" else "zset" if kind == "redis-zset" else "stream"
    )
    names = slot_consumers(consumer, slots)
    emulator = Worker(
        [_queue(client, kind, key, group, name, service_s) for name in names],
        block_s=block_s,
        memberships=[Membership(client, reclaim_kind, key, name, heartbeat_s, group)
                     for name in names],
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, emulator.stop)
    structlog.get_logger("autoscaler.emulator.worker").info(
        "worker_started", url=redact_url(url), slots=slots
    )
    try:
        await emulator.run()
    finally:
        await client.aclose()
