"""``autoscaler produce``: put load on a Redis queue the way real producers would, for load
tests and demos.

Arrivals are a Poisson process at ``--rate`` per second (seeded: the same ``--seed`` sends the
same arrival times and service times); each request carries ``enqueued_at`` (unix seconds) and
the ``service_s`` that ``autoscaler worker`` sleeps for, drawn from an exponential distribution
with mean ``--service-time`` (or exactly it with ``--fixed-service``). Each kind follows its
producer convention (the same classes the demo uses, ``autoscaler.emulator.loadgen``):
``redis-list`` LPUSH + ``<key>:enqueued``, ``redis-zset`` ZADD by enqueue time +
``<key>:enqueued``, ``redis-stream`` XADD. Sends are scheduled on offsets from the start, so a
slow round trip does not stretch the pattern. Stops after ``--duration`` or ``--count``, or at
SIGINT/SIGTERM; prints one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import click
from redis.exceptions import RedisError

from autoscaler.emulator.loadgen import REDIS_PRODUCERS, BurstPattern, Producer, generate
from autoscaler.runtime.clock import LoopClock
from autoscaler.sources.redis.settings import plain_name, redact_url, validate_redis_url


def _checked(value: str, param: str, check: object) -> str:
    try:
        return check(value)  # type: ignore[operator, no-any-return]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


@click.command("produce")
@click.option("--url", required=True, envvar="AUTOSCALER_QUEUE_URL", show_envvar=True,
              help="redis://[user:password@]host[:port][/db] (prefer the environment variable)")
@click.option("--kind", type=click.Choice(sorted(REDIS_PRODUCERS)), required=True,
              help="queue kind (its producer convention)")
@click.option("--key", required=True, help="the queue's Redis key")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True, max=100_000), required=True,
              help="mean arrivals per second (Poisson)")
@click.option("--service-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="mean seconds a worker spends per request (payload service_s)")
@click.option("--fixed-service", is_flag=True,
              help="every request takes exactly --service-time (default: exponential)")
@click.option("--duration", default=None, type=click.FloatRange(min=0, min_open=True),
              help="seconds to produce for (default: until --count, or until stopped)")
@click.option("--count", default=None, type=click.IntRange(min=1), help="stop after N requests")
@click.option("--seed", default=0, show_default=True, type=int, help="arrival/service seed")
def produce(url: str, kind: str, key: str, rate: float, service_time: float,
            fixed_service: bool, duration: float | None, count: int | None, seed: int) -> None:
    """Enqueue requests at a Poisson RATE with SERVICE-TIME payloads, for load tests."""
    _checked(url, "--url", validate_redis_url)
    _checked(key, "--key", lambda v: plain_name(v, "key"))
    mean = service_time if service_time > 0 else 1.0  # the pattern needs a positive mean
    pattern = BurstPattern(base_rate=rate, burst_rate=rate, mean_service_s=mean)
    fixed = service_time if fixed_service or service_time == 0 else None
    started = time.monotonic()
    try:
        sent = asyncio.run(_produce(url, kind, key, pattern, duration, count, seed, fixed))
    except (OSError, RedisError) as exc:  # an unreachable server, a key of another type
        click.echo(f"error: {redact_url(url)}: {exc}", err=True)
        sys.exit(1)
    elapsed = time.monotonic() - started
    click.echo(f"sent {sent} requests to {kind} {key} in {elapsed:.1f}s "
               f"({sent / elapsed if elapsed > 0 else 0:.2f}/s; asked {rate:g}/s)")


class _Counting:
    """Counts what the wrapped producer accepted. A stop never cuts a push in half: a signal
    during a push lets it finish (and be counted) and stops right after, so the summary's
    count is what the queue received."""

    def __init__(self, inner: Producer) -> None:
        self.inner = inner
        self.sent = 0
        self.stopping = False
        self.pushing = False

    async def push(self, enqueued_at: float, service_s: float) -> None:
        if self.stopping:
            raise asyncio.CancelledError
        self.pushing = True
        try:
            await self.inner.push(enqueued_at, service_s)
            self.sent += 1
        finally:
            self.pushing = False
        if self.stopping:
            raise asyncio.CancelledError

    def stop(self, task: asyncio.Task[int]) -> None:
        self.stopping = True
        if not self.pushing:
            task.cancel()

    async def close(self) -> None:
        await self.inner.close()


async def _produce(url: str, kind: str, key: str, pattern: BurstPattern, duration: float | None,
                   count: int | None, seed: int, fixed: float | None) -> int:
    producer = _Counting(REDIS_PRODUCERS[kind](url, key))
    horizon = duration if duration is not None else float("inf")
    task = asyncio.create_task(generate(pattern, producer, LoopClock(), horizon, seed,
                                        limit=count, fixed_service_s=fixed))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, producer.stop, task)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await producer.close()
    return producer.sent
