"""A list head over ``BIG_HEAD`` is copied into the probe once, not on every sample (see
``autoscaler.sources.redis.probe.HEAD_PREFIX``), on the real redis-server.

Counted, not timed: ``INFO commandstats`` says how many ``LINDEX`` the server ran (calls from
scripts count), so "copied once" is asserted as one call however slow the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from pydantic import BaseModel

from autoscaler.ports.clock import ManualClock
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.probe import BIG_HEAD, HEAD_PREFIX
from autoscaler.sources.redis.sampler import RedisSampler

MakeSampler = Callable[..., RedisSampler]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=100.0)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.config_resetstat()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def make_sampler(clock: ManualClock) -> AsyncIterator[MakeSampler]:
    samplers: list[RedisSampler] = []

    def make(pools: list[tuple[str, BaseModel]], timeout_s: float = 2.0) -> RedisSampler:
        sampler = RedisSampler(pools, clock, timeout_s)
        samplers.append(sampler)
        return sampler

    yield make
    for sampler in samplers:
        await sampler.close()


def lindex_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats").get("cmdstat_lindex")
    return int(stats["calls"]) if stats else 0


def big(enqueued_at: float, size: int = 2 * BIG_HEAD) -> str:
    return f'{{"enqueued_at": {enqueued_at}, "prompt": "{"x" * size}"}}'


def settings(url: str, key: str = "q") -> list[tuple[str, BaseModel]]:
    return [(key, RedisListSettings(url=url, key=key))]


async def test_a_big_head_is_copied_once_while_it_stays_the_head(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    r.lpush("q", big(wall - 5))
    r.incr("q:enqueued")  # a producer that counts
    sampler = make_sampler(settings(redis_url))
    for i in range(4):
        obs = (await sampler.sample())["q"]
        assert obs.fresh and obs.oldest_wait_s == pytest.approx(5.0 + i)
        clock.advance(1.0)
    assert lindex_calls(r) == 1
    assert 0 < r.pttl("q:bighead") <= 30_000
    r.lpush("q", '{"enqueued_at": %f}' % (wall - 1))  # behind it: the head is unchanged
    r.incr("q:enqueued")
    assert (await sampler.sample())["q"].oldest_wait_s == pytest.approx(9.0)
    assert lindex_calls(r) == 1
    r.rpop("q")  # a worker takes the big one: the small one is the head, read at once
    obs = (await sampler.sample())["q"]
    assert (obs.depth, obs.oldest_wait_s) == (1, pytest.approx(5.0))
    assert lindex_calls(r) == 2


async def test_a_big_head_without_a_key_in_its_prefix_is_remembered_as_unreadable(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.lpush("q", f'{{"prompt": "{"x" * 2 * HEAD_PREFIX}", "enqueued_at": {clock.wall()}}}')
    r.incr("q:enqueued")
    sampler = make_sampler(settings(redis_url))
    for _ in range(3):
        obs = (await sampler.sample())["q"]
        assert obs.fresh and obs.depth == 1 and obs.oldest_wait_s is None
    assert lindex_calls(r) == 1
    assert sampler.invalid.counts == {("q", "unreadable"): 3}


async def test_without_the_enqueued_counter_every_sample_copies_the_head(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    """The documented limit: no count of removals, no way to tell the head is the same."""
    r.lpush("q", big(clock.wall() - 2))
    sampler = make_sampler(settings(redis_url))
    for _ in range(3):
        assert (await sampler.sample())["q"].oldest_wait_s == pytest.approx(2.0)
    assert lindex_calls(r) == 3
    assert not r.exists("q:bighead")


async def test_a_first_copy_slower_than_the_timeout_costs_one_round(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    """100 MB takes Redis ~0.26-0.54 s to copy, over a 150 ms timeout: the round times out,
    but Redis finishes the script and leaves its mark, so the next round reads the head's time
    without a copy."""
    r.lpush("q", big(clock.wall() - 3, size=100 * 1024 * 1024))
    r.incr("q:enqueued")
    small = "other"
    r.lpush(small, '{"enqueued_at": %f}' % (clock.wall() - 1))
    sampler = make_sampler(settings(redis_url) + settings(redis_url, small), timeout_s=0.15)
    first = await sampler.sample()
    assert not first["q"].fresh and not first[small].fresh  # one round for the server
    deadline = 200
    while not r.exists("q:bighead"):  # the server still ran the script to its end
        deadline -= 1
        assert deadline, "the script left no mark"
        await asyncio.sleep(0.05)
    second = await sampler.sample()
    assert second["q"].fresh and second["q"].oldest_wait_s == pytest.approx(3.0)
    assert second[small].fresh and second[small].oldest_wait_s == pytest.approx(1.0)
    assert lindex_calls(r) == 3  # the big one once; the small one in each finished round
