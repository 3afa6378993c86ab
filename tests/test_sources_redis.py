"""The Redis queue sources against a real redis-server: what they measure, and how they fail."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from autoscaler.ports.clock import ManualClock
from autoscaler.sources.redis.lists import RedisListSettings, RedisListSource
from autoscaler.sources.redis.sampler import RedisSampler
from autoscaler.sources.redis.settings import redact_url
from autoscaler.sources.redis.streams import RedisStreamSettings, RedisStreamSource
from autoscaler.sources.redis.zsets import RedisZsetSettings, RedisZsetSource

MakeSampler = Callable[..., RedisSampler]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=100.0)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def make_sampler(clock: ManualClock) -> AsyncIterator[MakeSampler]:
    samplers: list[RedisSampler] = []

    def make(pools: list[tuple[str, BaseModel]], timeout_s: float = 2.0, **kw: Any) -> RedisSampler:
        sampler = RedisSampler(pools, clock, timeout_s, **kw)
        samplers.append(sampler)
        return sampler

    yield make
    for sampler in samplers:
        await sampler.close()


def lst(url: str, key: str = "q") -> tuple[str, BaseModel]:
    return key, RedisListSettings(url=url, key=key)


def job(enqueued_at: float, **extra: Any) -> str:
    return json.dumps({"enqueued_at": enqueued_at, **extra})


# ----------------------------------------------------------------------------- redis-list


async def test_list_measures_depth_oldest_wait_in_flight_and_rates(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    r.lpush("q", job(wall - 5.25), job(wall - 3), job(wall - 1))  # the oldest is at the right
    r.sadd("q:consumers", "w1", "w2")  # two workers, each with its own processing list
    r.lpush("q:processing:w1", job(wall - 9))
    r.lpush("q:processing:w2", job(wall - 8))
    r.set("q:enqueued", 10)
    r.set("q:completed", 4)
    sampler = make_sampler([lst(redis_url)])

    first = (await sampler.sample())["q"]
    assert (first.depth, first.oldest_wait_s, first.in_flight) == (3, 5.25, 2)
    assert first.fresh and first.time == 100.0
    assert first.arrival_rate is None and first.completion_rate is None  # first sample

    clock.advance(2.0)
    r.incrby("q:enqueued", 6)
    r.incrby("q:completed", 2)
    second = (await sampler.sample())["q"]
    assert second.oldest_wait_s == 7.25
    assert (second.arrival_rate, second.completion_rate) == (3.0, 1.0)


@pytest.mark.parametrize(
    "head",
    [b"not json", b"[1, 2]", b'{"enqueued_at": "yesterday"}', b'{"id": 7}', b"\xff\xfe", b"{"],
)
async def test_list_head_that_is_not_our_json_gives_depth_without_wait(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler, head: bytes
) -> None:
    r.lpush("q", head, job(clock.wall() - 1))
    obs = (await make_sampler([lst(redis_url)]).sample())["q"]
    assert (obs.depth, obs.oldest_wait_s, obs.fresh) == (2, None, True)


@pytest.mark.parametrize(
    ("template", "wait"),
    [
        # a prompt of 256 KiB before the field: found, and no JSON decode of the prompt
        ('{{"prompt": "{big}", "enqueued_at": {t}}}', 4.5),
        # the field's name quoted inside a string value does not count
        ('{{"prompt": "say \\"enqueued_at\\": 1", "enqueued_at": {t}}}', 4.5),
        ('{{ "enqueued_at" : {t:.12e} }}', 4.5),  # exponent form, spaces
        ('{{"enqueued_at": 1e999}}', None),  # not finite: unknown, not a wait of -inf
    ],
)
async def test_list_head_field_is_found_in_large_or_tricky_payloads(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler,
    template: str, wait: float | None,
) -> None:
    head = template.format(big="x" * 262_144, t=clock.wall() - 4.5)
    r.lpush("q", head.encode())
    obs = (await make_sampler([lst(redis_url)]).sample())["q"]
    assert obs.depth == 1
    if wait is None:
        assert obs.oldest_wait_s is None
    else:
        assert obs.oldest_wait_s == pytest.approx(wait, abs=1e-3)


async def test_missing_keys_are_an_empty_queue_without_counters(
    redis_url: str, make_sampler: MakeSampler
) -> None:
    pools = [
        lst(redis_url, "nothing"),
        ("z", RedisZsetSettings(url=redis_url, key="nothing-z")),
        ("s", RedisStreamSettings(url=redis_url, key="nothing-s", group="g")),
    ]
    sampler = make_sampler(pools)
    await sampler.sample()
    observations = await sampler.sample()
    for obs in observations.values():
        assert (obs.depth, obs.oldest_wait_s, obs.fresh) == (0, 0.0, True)  # as `memory` says
        assert obs.in_flight == 0
        assert obs.arrival_rate is None and obs.completion_rate is None


async def test_counter_reset_gives_unknown_rate_for_one_tick(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.set("q:completed", 100)
    sampler = make_sampler([lst(redis_url)])
    await sampler.sample()
    clock.advance(1.0)
    r.set("q:completed", 3)  # e.g. the key was deleted and workers started over
    assert (await sampler.sample())["q"].completion_rate is None
    clock.advance(2.0)
    r.incrby("q:completed", 4)
    assert (await sampler.sample())["q"].completion_rate == 2.0


async def test_non_integer_counter_is_unknown_not_an_error(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.set("q:completed", "lots\nof\tthem")
    sampler = make_sampler([lst(redis_url)])
    await sampler.sample()
    clock.advance(1.0)
    obs = (await sampler.sample())["q"]
    assert obs.fresh and obs.completion_rate is None


# ----------------------------------------------------------------------------- redis-zset


async def test_zset_measures_lowest_score_and_inflight_hash(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    r.zadd("z", {'{"id": 1}': wall - 2, '{"id": 2}': wall - 6.5, '{"id": 3}': wall - 1})
    r.hset("z:inflight", mapping={"worker-a": '{"id": 0}', "worker-b": '{"id": -1}'})
    r.set("z:enqueued", 5)
    sampler = make_sampler([("z", RedisZsetSettings(url=redis_url, key="z"))])
    obs = (await sampler.sample())["z"]
    assert (obs.depth, obs.oldest_wait_s, obs.in_flight) == (3, 6.5, 2)

    clock.advance(4.0)
    r.incrby("z:enqueued", 2)
    r.zpopmin("z")
    obs = (await sampler.sample())["z"]
    assert (obs.depth, obs.oldest_wait_s, obs.arrival_rate) == (2, 6.0, 0.5)


# ----------------------------------------------------------------------------- redis-stream


def stream_id(seconds: float, seq: int = 0) -> str:
    return f"{round(seconds * 1000)}-{seq}"


async def test_stream_measures_undelivered_entries_pending_and_entries_added(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    for i, age in enumerate((10.0, 7.5, 4.0)):
        r.xadd("s", {"n": str(i)}, id=stream_id(wall - age))
    r.xgroup_create("s", "workers", id="0")
    r.xreadgroup("workers", "w1", {"s": ">"}, count=1)  # the oldest entry is now pending
    r.set("s:completed", 7)
    sampler = make_sampler([("s", RedisStreamSettings(url=redis_url, key="s", group="workers"))])
    obs = (await sampler.sample())["s"]
    assert (obs.depth, obs.oldest_wait_s, obs.in_flight) == (2, 7.5, 1)

    clock.advance(2.0)
    r.xadd("s", {"n": "3"}, id=stream_id(wall))
    r.xadd("s", {"n": "4"}, id=stream_id(wall + 1))
    r.xack("s", "workers", stream_id(wall - 10))
    r.incr("s:completed")
    obs = (await sampler.sample())["s"]
    assert (obs.depth, obs.oldest_wait_s, obs.in_flight) == (4, 9.5, 0)
    assert (obs.arrival_rate, obs.completion_rate) == (1.0, 0.5)


async def test_stream_without_its_group_counts_every_entry_as_waiting(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    r.xadd("s", {"n": "0"}, id=stream_id(wall - 3))
    r.xadd("s", {"n": "1"}, id=stream_id(wall - 2))
    r.xgroup_create("s", "someone-else", id="$")
    obs = (await make_sampler(
        [("s", RedisStreamSettings(url=redis_url, key="s", group="workers"))]
    ).sample())["s"]
    assert (obs.depth, obs.oldest_wait_s, obs.in_flight) == (2, 3.0, 0)


async def test_stream_lag_unknown_after_xdel_falls_back_to_counting(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    wall = clock.wall()
    ids = [r.xadd("s", {"n": str(i)}, id=stream_id(wall - 10 + i)) for i in range(5)]
    r.xgroup_create("s", "workers", id="0")
    r.xreadgroup("workers", "w1", {"s": ">"}, count=1)
    r.xdel("s", ids[3])  # an undelivered entry deleted: Redis reports lag as nil
    assert r.xinfo_groups("s")[0]["lag"] is None
    obs = (await make_sampler(
        [("s", RedisStreamSettings(url=redis_url, key="s", group="workers"))]
    ).sample())["s"]
    assert (obs.depth, obs.oldest_wait_s, obs.in_flight) == (3, 9.0, 1)


# ----------------------------------------------------------------------------- failures


async def test_wrong_key_type_makes_that_pool_stale_and_the_others_fresh(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.set("a-string", "x")
    r.lpush("q", job(clock.wall() - 1))
    sampler = make_sampler([lst(redis_url, "a-string"), lst(redis_url, "q")])
    with capture_logs() as logs:
        observations = await sampler.sample()
    assert not observations["a-string"].fresh and observations["q"].fresh
    failed = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert len(failed) == 1 and failed[0]["pool"] == "a-string"
    assert "WRONGTYPE" in failed[0]["error"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_redis_gives_stale_observations_and_a_redacted_warning(
    make_sampler: MakeSampler,
) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{_closed_port()}/0"
    sampler = make_sampler([lst(url, "a"), lst(url, "b")], timeout_s=1.0)
    with capture_logs() as logs:
        observations = await sampler.sample()
    assert {name: (o.depth, o.fresh) for name, o in observations.items()} == {
        "a": (0, False), "b": (0, False)}
    assert [e["event"] for e in logs] == ["queue_sample_failed"]
    assert logs[0]["url"] == f"redis://user:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert "s3cret" not in repr(logs)


async def test_timeout_keeps_last_known_values_then_recovers(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.lpush("q", job(clock.wall() - 2), job(clock.wall() - 1))
    r.set("q:completed", 1)
    sampler = make_sampler([lst(redis_url)], timeout_s=0.2)
    good = (await sampler.sample())["q"]
    clock.advance(1.0)
    r.client_pause(30_000, all=False)  # WRITE pause: holds scripts, not CLIENT UNPAUSE
    try:
        with capture_logs() as logs:
            stale = (await sampler.sample())["q"]
    finally:
        r.client_unpause()
    assert logs[0]["event"] == "queue_sample_failed" and logs[0]["error_type"] == "TimeoutError"
    assert not stale.fresh and stale.time == 101.0
    assert (stale.depth, stale.oldest_wait_s) == (good.depth, good.oldest_wait_s)

    clock.advance(1.0)
    r.incrby("q:completed", 4)
    recovered = (await sampler.sample())["q"]
    assert recovered.fresh and recovered.depth == 2
    assert recovered.completion_rate == 2.0  # the delta spans the failed tick


async def test_script_flushed_on_the_server_is_reloaded_within_the_tick(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.lpush("q", job(clock.wall() - 1))
    sampler = make_sampler([lst(redis_url)])
    assert (await sampler.sample())["q"].fresh
    r.script_flush()  # as after a restart or failover to a server without the script
    with capture_logs() as logs:
        obs = (await sampler.sample())["q"]
    assert obs.fresh and obs.depth == 1 and logs == []


def commandstats(r: redis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in r.info("commandstats").items()}


async def test_many_pools_of_mixed_kinds_cost_one_command_per_chunk(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    pools: list[tuple[str, BaseModel]] = []
    for i in range(240):
        key = f"q{i}"
        if i % 3 == 0:
            r.lpush(key, job(clock.wall() - i))
            pools.append((key, RedisListSettings(url=redis_url, key=key)))
        elif i % 3 == 1:
            r.zadd(key, {"m": clock.wall() - i})
            pools.append((key, RedisZsetSettings(url=redis_url, key=key)))
        else:
            r.xadd(key, {"n": "1"}, id=stream_id(clock.wall() - i))
            r.xgroup_create(key, "g", id="0")
            pools.append((key, RedisStreamSettings(url=redis_url, key=key, group="g")))
    sampler = make_sampler(pools)
    await sampler.sample()  # loads the script
    before = commandstats(r)
    observations = await sampler.sample()
    after = commandstats(r)
    assert len(observations) == 240
    assert all(o.fresh and o.depth == 1 for o in observations.values())
    assert [o.oldest_wait_s for o in observations.values()] == [float(i) for i in range(240)]
    # One EVALSHA carried all 240 pools: nothing else crossed the wire for them.
    assert after["cmdstat_evalsha"] - before["cmdstat_evalsha"] == 1
    clients = r.client_list()
    assert sum(1 for c in clients if c["cmd"] == "evalsha") == 1

    chunked = make_sampler(pools, chunk=100)
    await chunked.sample()
    before = commandstats(r)
    assert len(await chunked.sample()) == 240
    assert commandstats(r)["cmdstat_evalsha"] - before["cmdstat_evalsha"] == 3


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://localhost:6379/0", "key": "q"}, "must be redis://"),
        ({"url": "redis:///0", "key": "q"}, "no host"),
        ({"url": "redis://h:99999/0", "key": "q"}, "invalid Redis URL"),
        ({"url": "redis://h:6379/zero", "key": "q"}, "database must be a number"),
        ({"url": "redis://h/0", "key": " q"}, "surrounding whitespace"),
        ({"url": "redis://h/0", "key": "q", "db": 1}, "Extra inputs are not permitted"),
    ],
)
def test_settings_reject_bad_input_with_a_clear_message(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisListSettings.model_validate(fields)


def test_stream_settings_require_a_group() -> None:
    with pytest.raises(ValidationError, match="group"):
        RedisStreamSettings.model_validate({"url": "rediss://h:6380/0", "key": "s"})


def test_error_messages_never_show_the_password() -> None:
    with pytest.raises(ValidationError) as info:
        RedisListSettings(url="http://u:hunter2@h/0", key="q")
    assert "hunter2" not in str(info.value)
    assert redact_url("rediss://:pw@[::1]:6380/2") == "rediss://:***@[::1]:6380/2"


def test_kinds_are_registered_and_share_one_sampler_per_url(registries: dict[str, Any]) -> None:
    sources = registries["sources"]
    kinds = [sources.get(n) for n in ("redis-list", "redis-stream", "redis-zset")]
    assert kinds == [RedisListSource, RedisStreamSource, RedisZsetSource]
    url = "redis://h:6379/0"
    keys = {
        RedisListSource.sampler_key(RedisListSettings(url=url, key="a")),
        RedisZsetSource.sampler_key(RedisZsetSettings(url=url, key="b")),
        RedisStreamSource.sampler_key(RedisStreamSettings(url=url, key="c", group="g")),
    }
    assert len(keys) == 1
    other_db = RedisListSettings(url="redis://h:6379/1", key="a")
    assert RedisListSource.sampler_key(other_db) not in keys


async def test_zset_with_an_infinite_score_has_depth_but_no_wait(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler
) -> None:
    r.zadd("z", {"forever": float("-inf"), "later": 5.0})
    obs = (await make_sampler([("z", RedisZsetSettings(url=redis_url, key="z"))]).sample())["z"]
    assert (obs.depth, obs.oldest_wait_s, obs.fresh) == (2, None, True)


async def test_list_head_field_matches_a_json_parser_on_many_shapes(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    """The probe's fast path and its full scan against ``json.loads``: 400 seeded payloads with
    the field at the top level or only nested, after strings holding braces, quotes, escapes
    and the field's own name, or absent."""
    import random

    rng = random.Random(12)
    tricky = ['x{', '}', '[', '"enqueued_at": 1', 'a\\"b', 'enqueued_at', ',', '\\\\', 'é']

    def value(depth: int) -> Any:
        pick = rng.random()
        if depth < 2 and pick < 0.2:
            return {rng.choice(["a", "enqueued_at", "b"]): value(depth + 1)}
        if depth < 2 and pick < 0.3:
            return [value(depth + 1), rng.choice(tricky)]
        if pick < 0.6:
            return "".join(rng.choice(tricky) for _ in range(rng.randint(0, 3)))
        return rng.randint(-5, 5)

    expected: dict[str, float | None] = {}
    for i in range(400):
        fields = [(f"k{j}", value(0)) for j in range(rng.randint(0, 3))]
        at = clock.wall() - rng.uniform(1, 100)
        if rng.random() < 0.8:
            fields.insert(rng.randint(0, len(fields)), ("enqueued_at", at))
        payload = dict(fields)
        text = json.dumps(payload, ensure_ascii=rng.random() < 0.5,
                          separators=rng.choice([(",", ":"), (", ", ": ")]))
        top = json.loads(text).get("enqueued_at")
        expected[f"q{i}"] = (clock.wall() - top) if isinstance(top, float) else None
        r.lpush(f"q{i}", text.encode())
    sampler = make_sampler([lst(redis_url, key) for key in expected], chunk=250)
    observed = await sampler.sample()
    for key, wait in expected.items():
        got = observed[key].oldest_wait_s
        assert (got is None) == (wait is None), key
        if wait is not None and got is not None:
            assert got == pytest.approx(wait, abs=1e-3), key


async def test_an_outage_is_logged_once_per_change_of_error_then_recovered(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    """Eight failed rounds are one warning, not eight; the first good round after them
    says so once; a pool's own error (WRONGTYPE) is logged apart, once."""
    r.lpush("q", job(clock.wall() - 1))
    r.set("a-string", "x")
    sampler = make_sampler([lst(redis_url), lst(redis_url, "a-string")], timeout_s=0.25)
    with capture_logs() as first:
        for _ in range(3):
            await sampler.sample()
    assert [(e["event"], e.get("pool")) for e in first] == [("queue_sample_failed", "a-string")]
    with capture_logs() as logs:
        r.client_pause(30_000, all=False)  # WRITE pause: holds scripts, not CLIENT UNPAUSE
        try:
            for _ in range(8):
                clock.advance(0.1)
                assert not (await sampler.sample())["q"].fresh
        finally:
            r.client_unpause()
        for _ in range(3):
            clock.advance(0.1)
            observations = await sampler.sample()
        r.delete("a-string")
        clock.advance(0.1)
        await sampler.sample()
    assert observations["q"].fresh and not observations["a-string"].fresh
    events = [(e["event"], e.get("pool"), e.get("error_type")) for e in logs]
    assert events == [
        ("queue_sample_failed", None, "TimeoutError"),  # once for eight rounds
        ("queue_sample_recovered", None, None),
        ("queue_sample_recovered", "a-string", None),  # WRONGTYPE was not logged again
    ], events
    assert "sample timeout" in logs[0]["error"]
