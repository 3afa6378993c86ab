"""Implausible enqueue times (issue 10 item 3) are an unknown wait, counted and warned about,
in the Redis probe (a real redis-server) and the memory source; a huge head payload never
blinds sampling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from structlog.testing import capture_logs

from autoscaler.core.plausibility import SANE_EPOCH, classify_enqueue_time
from autoscaler.ports.clock import ManualClock
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import MemorySettings, MemorySource, reset_queue
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.sampler import RedisSampler
from autoscaler.sources.redis.streams import RedisStreamSettings
from autoscaler.sources.redis.zsets import RedisZsetSettings

MakeSampler = Callable[..., RedisSampler]
WALL = 1_700_000_100.0  # ManualClock(start=100.0).wall()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=100.0)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
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


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (WALL - 3.0, None),
        (WALL + 4.0, None),  # within the 5 s skew tolerance
        (WALL + 60.0, "future"),
        (0.0, "before_epoch"),
        (-5.0, "before_epoch"),
        (SANE_EPOCH - 1.0, "before_epoch"),
        (float("inf"), "non_finite"),
        (float("-inf"), "non_finite"),
        (float("nan"), "non_finite"),
        ((WALL - 3.0) * 1000.0, "milliseconds"),
        ((WALL + 3600.0) * 1000.0, "future"),  # not even a plausible time in ms
    ],
)
def test_classify_enqueue_time(value: float, reason: str | None) -> None:
    assert classify_enqueue_time(value, WALL) == reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"enqueued_at": 0}', "before_epoch"),
        ('{"enqueued_at": -5}', "before_epoch"),
        (f'{{"enqueued_at": {WALL + 3600}}}', "future"),
        (f'{{"enqueued_at": {(WALL - 10) * 1000:.0f}}}', "milliseconds"),
        ('{"enqueued_at": 1e999}', "non_finite"),
    ],
)
async def test_list_head_with_an_implausible_time_is_unknown_and_counted(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler, payload: str, reason: str
) -> None:
    r.lpush("q", payload)
    sampler = make_sampler([("q", RedisListSettings(url=redis_url, key="q"))])
    telemetry = PrometheusTelemetry(CollectorRegistry())
    sampler.invalid.sink = telemetry.record_observation_invalid
    with capture_logs() as logs:
        for _ in range(3):
            obs = (await sampler.sample())["q"]
            assert (obs.depth, obs.oldest_wait_s, obs.fresh) == (1, None, True)
    assert sampler.invalid.counts == {("q", reason): 3}
    value = telemetry.registry.get_sample_value(
        "autoscaler_observation_invalid_total", {"pool": "q", "reason": reason}
    )
    assert value == 3.0
    warnings = [e for e in logs if e["event"] == "observation_invalid"]
    assert len(warnings) == 1  # rate-limited: one per pool and reason per minute
    assert warnings[0]["pool"] == "q" and warnings[0]["reason"] == reason


@pytest.mark.parametrize(
    ("payload", "wait"),
    [
        # a nested enqueued_at before the real one is not read
        (f'{{"meta": {{"enqueued_at": 0}}, "enqueued_at": {WALL - 7}}}', 7.0),
        (f'{{"tags": [{{"enqueued_at": 0}}], "x": "}}{{", "enqueued_at": {WALL - 2}}}', 2.0),
        # a nested one alone: unknown, never a 57-year wait
        ('{"meta": {"enqueued_at": 0}}', None),
        ('{"meta": {"enqueued_at": 1}, "id": 3}', None),
        # a string value equal to the key's name is not the key
        (f'{{"k": "enqueued_at", "enqueued_at": {WALL - 1}}}', 1.0),
        # an escaped quote and brace inside a string do not shift the depth
        (f'{{"p": "a\\\\\\"{{b", "enqueued_at": {WALL - 3}}}', 3.0),
    ],
)
async def test_only_the_top_level_enqueued_at_counts(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler, payload: str, wait: float | None
) -> None:
    json.loads(payload)  # every case is valid JSON
    r.lpush("q", payload)
    sampler = make_sampler([("q", RedisListSettings(url=redis_url, key="q"))])
    obs = (await sampler.sample())["q"]
    assert obs.depth == 1 and obs.fresh
    if wait is None:
        assert obs.oldest_wait_s is None
    else:
        assert obs.oldest_wait_s == pytest.approx(wait, abs=1e-3)
    # a head without a readable top-level time is counted as such, never silently unknown
    assert sampler.invalid.counts == ({} if wait is not None else {("q", "unreadable"): 1})


@pytest.mark.parametrize("field_first", [True, False])
async def test_a_100_mb_head_payload_does_not_blind_sampling(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler, field_first: bool
) -> None:
    """The script scans only a bounded prefix: the sample succeeds (fresh, within a 2 s
    timeout; the copy of the element into Lua still costs ~0.5 s, see ``HEAD_PREFIX``), and
    the wait is read from the prefix when the field comes first, unknown when it comes after
    100 MB of prompt."""
    big = "x" * (100 * 1024 * 1024)
    t = WALL - 6.0
    if field_first:
        payload = f'{{"enqueued_at": {t}, "prompt": "{big}"}}'
    else:
        payload = f'{{"prompt": "{big}", "enqueued_at": {t}}}'
    r.lpush("q", payload)
    del payload, big
    sampler = make_sampler([("q", RedisListSettings(url=redis_url, key="q"))], timeout_s=2.0)
    for _ in range(2):
        obs = (await sampler.sample())["q"]
        assert obs.fresh and obs.depth == 1
        if field_first:
            assert obs.oldest_wait_s == pytest.approx(6.0, abs=1e-3)
        else:
            assert obs.oldest_wait_s is None
    r.delete("q")


async def test_zset_and_stream_heads_are_checked_too(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler
) -> None:
    r.zadd("z", {"a": 0.0})
    future_ms = int((WALL + 3600) * 1000)
    r.xadd("s", {"p": "1"}, id=f"{future_ms}-0")
    r.xgroup_create("s", "g", id="0")
    sampler = make_sampler([
        ("z", RedisZsetSettings(url=redis_url, key="z")),
        ("s", RedisStreamSettings(url=redis_url, key="s", group="g")),
    ])
    got = await sampler.sample()
    assert got["z"].depth == 1 and got["z"].oldest_wait_s is None
    assert got["s"].depth == 1 and got["s"].oldest_wait_s is None
    assert sampler.invalid.counts == {("z", "before_epoch"): 1, ("s", "future"): 1}


async def test_memory_source_reports_implausible_times_as_unknown() -> None:
    clock = ManualClock()
    queue = reset_queue("t-plausible")
    sampler = MemorySource.make_sampler([("p", MemorySettings(name="t-plausible"))], clock, 0.5)
    queue.put(clock.wall() * 1000.0, 1.0)
    obs = (await sampler.sample())["p"]
    assert (obs.depth, obs.oldest_wait_s) == (1, None)
    assert sampler.invalid.counts == {("p", "milliseconds"): 1}
    queue.take_nowait(clock.wall())
    queue.put(clock.wall() - 2.0, 1.0)
    obs = (await sampler.sample())["p"]
    assert obs.oldest_wait_s == pytest.approx(2.0)


