"""How long one sampling round takes for 1000 Redis queues on one server (target: <= 10 ms).

Starts a private redis-server on a free loopback port, fills 1000 queues (lists, sorted sets and
streams with a consumer group, each with a few items and counters), then times 50 rounds of
``RedisSampler.sample()`` after two warm-up rounds (script load, connection). Prints figures;
asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from pydantic import BaseModel

from autoscaler import testing
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.sampler import RedisSampler
from autoscaler.sources.redis.streams import RedisStreamSettings
from autoscaler.sources.redis.zsets import RedisZsetSettings

QUEUES = 1000
ROUNDS = 50
ITEMS = 5


class SystemClock:
    """Real time, as the daemon has it."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on loopback; yields the URL of its database 0."""
    try:
        with testing.redis_server() as url:
            yield f"{url}/0"
    except testing.ServerStartError as exc:
        raise SystemExit(str(exc)) from None


def fill(url: str) -> list[tuple[str, BaseModel]]:
    """1000 queues, a third of each kind, each with ITEMS requests and counters."""
    client = redis.Redis.from_url(url)
    pools: list[tuple[str, BaseModel]] = []
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(QUEUES):
        key = f"bench:{i}"
        pipe.set(f"{key}:completed", i)
        if i % 3 == 0:
            for j in range(ITEMS):
                pipe.lpush(key, json.dumps({"id": j, "enqueued_at": now - j, "prompt": "x" * 200}))
            pipe.set(f"{key}:enqueued", i + ITEMS)
            pools.append((key, RedisListSettings(url=url, key=key)))
        elif i % 3 == 1:
            pipe.zadd(key, {json.dumps({"id": j}): now - j for j in range(ITEMS)})
            pools.append((key, RedisZsetSettings(url=url, key=key)))
        else:
            for j in range(ITEMS):
                pipe.xadd(key, {"id": str(j), "service_s": "0.1"})
            pipe.xgroup_create(key, "workers", id="0")
            pools.append((key, RedisStreamSettings(url=url, key=key, group="workers")))
    pipe.execute()
    client.close()
    return pools


async def rounds(pools: list[tuple[str, BaseModel]]) -> tuple[list[float], float]:
    """Wall milliseconds of each round, and this process's CPU milliseconds per round."""
    sampler = RedisSampler(pools, SystemClock(), timeout_s=5.0)
    try:
        for _ in range(2):
            warm = await sampler.sample()
            if not all(o.fresh for o in warm.values()):
                raise SystemExit("warm-up round failed: see the queue_sample_failed warning")
        times = []
        cpu = time.process_time()
        for _ in range(ROUNDS):
            start = time.perf_counter()
            await sampler.sample()
            times.append((time.perf_counter() - start) * 1000.0)
        return times, (time.process_time() - cpu) * 1000.0 / ROUNDS
    finally:
        await sampler.close()


def server_ms(url: str) -> float:
    """Milliseconds the server spent in the probe script so far (INFO commandstats)."""
    client = redis.Redis.from_url(url)
    stats = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0})
    client.close()
    return float(stats["usec"]) / 1000.0


def server_cpu_ms(url: str) -> float:
    """CPU milliseconds redis-server has used (user + system): unlike the command's wall time,
    not inflated when other processes take the cores."""
    client = redis.Redis.from_url(url)
    info = client.info("cpu")
    client.close()
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1000.0


def main() -> None:
    with redis_server() as url:
        pools = fill(url)
        before, cpu_before = server_ms(url), server_cpu_ms(url)
        measured, client_cpu = asyncio.run(rounds(pools))
        times = sorted(measured)
        server = (server_ms(url) - before) / (ROUNDS + 2)
        server_cpu = (server_cpu_ms(url) - cpu_before) / (ROUNDS + 2)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"sampling {QUEUES} queues (lists, zsets, streams) in one round trip, {ROUNDS} rounds")
    print(f"  median {statistics.median(times):.2f} ms   p95 {p95:.2f} ms   "
          f"max {times[-1]:.2f} ms   (target <= 10 ms)")
    print(f"  of which Redis runs the probe script for {server:.2f} ms per round (mean)")
    print(f"  CPU per round: redis-server {server_cpu:.2f} ms, the sampler's process "
          f"{client_cpu:.2f} ms (decoding overlaps the script: replies are read as they come)")


if __name__ == "__main__":
    main()
