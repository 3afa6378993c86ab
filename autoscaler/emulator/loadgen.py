"""A seeded, bursty load generator for the demo and the end-to-end test.

Arrivals are a Poisson process whose rate steps between a base and a burst level; they are drawn
by thinning against the burst rate, so one seed always gives the same arrival times and service
times whatever the machine's speed. Sends are scheduled on absolute offsets from the start, so a
slow push never stretches the pattern.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from autoscaler.ports.clock import Clock
from autoscaler.sources.memory import get_queue


@dataclass(frozen=True, slots=True)
class BurstPattern:
    """``base_rate`` req/s, with ``burst_rate`` for ``burst_length`` s every ``burst_every`` s
    from ``first_burst`` on."""

    base_rate: float = 1.5
    burst_rate: float = 7.0
    first_burst: float = 8.0
    burst_every: float = 25.0
    burst_length: float = 10.0
    mean_service_s: float = 1.0

    def __post_init__(self) -> None:
        if self.base_rate < 0 or self.burst_rate <= 0 or self.burst_rate < self.base_rate:
            raise ValueError("rates must satisfy 0 <= base_rate <= burst_rate, burst_rate > 0")
        if self.burst_every <= 0 or not 0 <= self.burst_length <= self.burst_every:
            raise ValueError("need burst_every > 0 and 0 <= burst_length <= burst_every")
        if self.mean_service_s <= 0:
            raise ValueError("mean_service_s must be > 0")

    def rate(self, t: float) -> float:
        if t >= self.first_burst and (t - self.first_burst) % self.burst_every < self.burst_length:
            return self.burst_rate
        return self.base_rate

    def arrivals(self, duration_s: float, seed: int) -> Iterator[tuple[float, float]]:
        """``(offset_s, service_s)`` pairs in time order, for ``duration_s`` seconds."""
        rng = random.Random(seed)
        t = 0.0
        while True:
            t += rng.expovariate(self.burst_rate)
            if t >= duration_s:
                return
            accept = rng.random() < self.rate(t) / self.burst_rate
            service = rng.expovariate(1.0 / self.mean_service_s)
            if accept:
                yield t, service


class Producer(Protocol):
    async def push(self, enqueued_at: float, service_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryProducer:
    """Pushes onto a process-wide memory queue."""

    def __init__(self, name: str) -> None:
        self.queue = get_queue(name)

    async def push(self, enqueued_at: float, service_s: float) -> None:
        self.queue.put(enqueued_at, service_s)

    async def close(self) -> None:
        return None


class _RedisProducer:
    """One client and a numbered id per request; a subclass adds the kind's convention."""

    def __init__(self, url: str, key: str, prefix: str = "req") -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.Redis.from_url(url)
        self.key = key
        self._prefix = prefix
        self._n = 0

    def _next_id(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._n}"

    async def push(self, enqueued_at: float, service_s: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self._client.aclose()


class RedisListProducer(_RedisProducer):
    """The ``redis-list`` producer convention: ``LPUSH`` a JSON object and ``INCR <key>:enqueued``.
    """

    async def push(self, enqueued_at: float, service_s: float) -> None:
        payload = json.dumps({"id": self._next_id(), "enqueued_at": enqueued_at,
                              "service_s": round(service_s, 4)})
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key, payload)
            pipe.incr(self.key + ":enqueued")
            await pipe.execute()


class RedisZsetProducer(_RedisProducer):
    """The ``redis-zset`` producer convention: ``ZADD <key> <enqueued_at> <JSON member>`` (the
    member carries a unique id) and ``INCR <key>:enqueued``."""

    async def push(self, enqueued_at: float, service_s: float) -> None:
        member = json.dumps({"id": self._next_id(), "enqueued_at": enqueued_at,
                             "service_s": round(service_s, 4)})
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {member: enqueued_at})
            pipe.incr(self.key + ":enqueued")
            await pipe.execute()


class RedisStreamProducer(_RedisProducer):
    """The ``redis-stream`` producer convention: ``XADD <key> * ...`` (the entry ID is the
    enqueue time; the stream counts its own arrivals), fields ``id``, ``enqueued_at`` and
    ``service_s``."""

    async def push(self, enqueued_at: float, service_s: float) -> None:
        await self._client.xadd(self.key, {"id": self._next_id(),
                                           "enqueued_at": repr(enqueued_at),
                                           "service_s": repr(round(service_s, 4))})


REDIS_PRODUCERS: dict[str, type[RedisListProducer | RedisZsetProducer | RedisStreamProducer]] = {
    "redis-list": RedisListProducer,
    "redis-zset": RedisZsetProducer,
    "redis-stream": RedisStreamProducer,
}


async def generate(
    pattern: BurstPattern, producer: Producer, clock: Clock, duration_s: float, seed: int,
    *, limit: int | None = None, fixed_service_s: float | None = None,
) -> int:
    """Send the pattern's arrivals in real time (on the running loop); returns how many.

    ``limit`` stops after that many requests; ``fixed_service_s`` replaces the drawn service
    times (the arrival times stay those of the seed)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    for offset, drawn in pattern.arrivals(duration_s, seed):
        if limit is not None and sent >= limit:
            break
        service = drawn if fixed_service_s is None else fixed_service_s
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.push(clock.wall(), service)
        sent += 1
    return sent
