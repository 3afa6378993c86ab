"""rq, arq and Celery queues measured as the real libraries write them (real redis-server,
real rq worker process, real arq worker, kombu's own consumer), through the one probe round
trip that every Redis kind shares."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ValidationError

from autoscaler.ports.clock import ManualClock
from autoscaler.registry import SOURCE_GROUP, Registry
from autoscaler.sources.redis.arq_jobs import ArqSettings, ArqSource
from autoscaler.sources.redis.celery_jobs import CelerySettings, CelerySource
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.rq_jobs import RqSettings, RqSource
from autoscaler.sources.redis.sampler import RedisSampler

REPO = Path(__file__).resolve().parent.parent
MakeSampler = Callable[..., RedisSampler]


@pytest.fixture
def clock() -> ManualClock:
    """Monotonic 0, wall = 30 s after the real time at the start: the libraries stamp real
    times, and each test's jobs are then 30 s old or a little less."""
    return ManualClock(start=0.0, wall_offset=time.time() + 30.0)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def make_sampler(clock: ManualClock) -> AsyncIterator[MakeSampler]:
    samplers: list[RedisSampler] = []

    def make(pools: list[tuple[str, BaseModel]]) -> RedisSampler:
        sampler = RedisSampler(pools, clock, 5.0)
        samplers.append(sampler)
        return sampler

    yield make
    for sampler in samplers:
        await sampler.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_the_three_kinds_are_registered_under_their_names() -> None:
    registry: Registry[Any] = Registry(SOURCE_GROUP, "source").load_entry_points()
    assert registry.get("rq") is RqSource
    assert registry.get("arq") is ArqSource
    assert registry.get("celery") is CelerySource


def test_production_code_does_not_import_the_job_queue_libraries() -> None:
    code = (
        "import sys\n"
        "import autoscaler.sources.redis.rq_jobs, autoscaler.sources.redis.arq_jobs\n"
        "import autoscaler.sources.redis.celery_jobs, autoscaler.sources.redis.sampler\n"
        "print(sorted(m for m in ('rq', 'arq', 'celery', 'kombu') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_reject_line_breaks_and_keep_the_libraries_defaults(redis_url: str) -> None:
    assert ArqSettings(url=redis_url).key == "arq:queue"
    assert CelerySettings(url=redis_url).key == "celery"
    assert RqSettings(url=redis_url, key="default").probe().key == "rq:queue:default"
    with pytest.raises(ValidationError, match="line breaks"):
        RqSettings(url=redis_url, key="default", prefix="rq\n")


# ----------------------------------------------------------------------------------- rq


async def test_rq_depth_wait_in_flight_and_rates_from_a_real_worker(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    from rq import Queue
    from rq.job import Job

    from tests import jobqueue_tasks

    queue = Queue("default", connection=r)
    blocker = queue.enqueue(jobqueue_tasks.block_until, redis_url, "go")
    waiting = [queue.enqueue(jobqueue_tasks.noop) for _ in range(2)]
    sampler = make_sampler([("p", RqSettings(url=redis_url, key="default"))])

    idle = (await sampler.sample())["p"]
    head = Job.fetch(blocker.id, connection=r).enqueued_at
    assert head is not None
    assert (idle.depth, idle.in_flight) == (3, 0)
    assert idle.oldest_wait_s == pytest.approx(clock.wall() - head.timestamp(), abs=1e-3)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "rq"), "worker", "--burst", "--url", redis_url,
         "--path", str(REPO), "default"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: r.zcard("rq:wip:default") == 1, "the rq worker to start the blocker")
        clock.advance(2.0)
        busy = (await sampler.sample())["p"]
        second = Job.fetch(waiting[0].id, connection=r).enqueued_at
        assert second is not None
        assert (busy.depth, busy.in_flight) == (2, 1)
        assert busy.oldest_wait_s == pytest.approx(clock.wall() - second.timestamp(), abs=1e-3)
        assert busy.arrival_rate == 0.0 and busy.completion_rate == 0.0

        r.set("go", 1)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    clock.advance(4.0)
    done = (await sampler.sample())["p"]
    assert (done.depth, done.in_flight, done.oldest_wait_s) == (0, 0, 0.0)
    assert done.completion_rate == pytest.approx(3 / 4.0)
    assert done.arrival_rate == 0.0  # the three were already counted as arrived

    queue.enqueue(jobqueue_tasks.noop)
    clock.advance(1.0)
    assert (await sampler.sample())["p"].arrival_rate == pytest.approx(1.0)


async def test_rq_an_expired_lease_is_not_in_flight_and_a_foreign_prefix_is_read(
    redis_url: str, r: redis.Redis, make_sampler: MakeSampler
) -> None:
    r.zadd("jobs:wip:gpu", {"dead:exec": time.time() - 60, "live:exec": time.time() + 60})
    r.rpush("jobs:queue:gpu", "missing-job")  # its hash expired: depth counts, wait unknown
    sampler = make_sampler([("p", RqSettings(url=redis_url, key="gpu", prefix="jobs"))])
    obs = (await sampler.sample())["p"]
    assert (obs.depth, obs.in_flight, obs.oldest_wait_s) == (1, 1, None)


@pytest.mark.parametrize("stamp", [
    "2024-02-29T23:59:59.500000Z", "2100-03-01T00:00:00.000001Z", "2027-12-31T12:00:00Z",
    "2001-01-01T00:00:07.25Z",
])
async def test_rq_timestamps_are_read_as_utc_calendar_dates(
    redis_url: str, r: redis.Redis, stamp: str
) -> None:
    from datetime import UTC, datetime

    r.rpush("rq:queue:default", "j1")
    r.hset("rq:job:j1", "enqueued_at", stamp)
    at = datetime.strptime(stamp.rstrip("Z"), "%Y-%m-%dT%H:%M:%S" + (".%f" if "." in stamp else ""))
    seconds = at.replace(tzinfo=UTC).timestamp()
    sampler = RedisSampler([("p", RqSettings(url=redis_url, key="default"))],
                           ManualClock(0.0, wall_offset=seconds + 12.5), 5.0)
    try:
        assert (await sampler.sample())["p"].oldest_wait_s == pytest.approx(12.5, abs=1e-4)
    finally:
        await sampler.close()


# ---------------------------------------------------------------------------------- arq


async def test_arq_due_jobs_wait_running_ones_are_in_flight_deferred_ones_do_not_count(
    redis_url: str, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings as ArqRedis
    from arq.worker import Worker, func

    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(ctx: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    async def quick(ctx: dict[str, Any]) -> None:
        return None

    pool = await create_pool(ArqRedis.from_dsn(redis_url))
    try:
        await pool.enqueue_job("hold")
        await asyncio.sleep(0.005)  # a later score: the worker starts "hold" first
        await pool.enqueue_job("quick")
        await pool.enqueue_job("quick", _defer_by=3600)  # not due: waits for nobody
        scores = {
            job.decode(): score
            for job, score in await pool.zrange("arq:queue", 0, -1, withscores=True)
        }
        sampler = make_sampler([("p", ArqSettings(url=redis_url))])
        before = (await sampler.sample())["p"]
        oldest = min(scores.values()) / 1000
        assert (before.depth, before.in_flight) == (2, 0)
        assert before.oldest_wait_s == pytest.approx(clock.wall() - oldest, abs=1e-3)

        functions = [func(hold, name="hold"), func(quick, name="quick")]
        worker = Worker(functions=functions, redis_pool=pool, max_jobs=1,
                        handle_signals=False, poll_delay=0.01)
        run = asyncio.create_task(worker.main())
        await asyncio.wait_for(started.wait(), 20)
        during = (await sampler.sample())["p"]
        second = sorted(scores.values())[1] / 1000
        assert (during.depth, during.in_flight) == (1, 1)
        assert during.oldest_wait_s == pytest.approx(clock.wall() - second, abs=1e-3)

        release.set()
        for _ in range(2000):  # until the worker has run both due jobs
            if await pool.zcard("arq:queue") == 1:
                break
            await asyncio.sleep(0.01)
        # One cancel can be lost inside the worker's Redis read (seen once in CI: the worker
        # kept polling and the test hung): cancel again until the task has ended.
        while not run.done():
            run.cancel()
            await asyncio.wait({run}, timeout=1.0)
        await asyncio.wait_for(worker.close(), 20)
        after = (await sampler.sample())["p"]
        assert (after.depth, after.in_flight, after.oldest_wait_s) == (0, 0, 0.0)
        assert await pool.zcard("arq:queue") == 1  # the deferred one is still there
    finally:
        await pool.aclose()


# ------------------------------------------------------------------------------- celery


def celery_app(url: str) -> Any:
    from celery import Celery

    app = Celery("jobqueues", broker=url)
    app.conf.broker_transport_options = {"priority_steps": [0, 3, 6, 9]}
    return app


async def test_celery_counts_priority_sub_queues_and_reads_the_enqueued_at_header(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    app = celery_app(redis_url)
    stamp = clock.wall()
    app.send_task("t.infer", (1,), headers={"enqueued_at": stamp - 3.0})
    app.send_task("t.infer", (2,), priority=6, headers={"enqueued_at": stamp - 8.5})
    app.send_task("t.infer", (3,), priority=3, headers={"enqueued_at": stamp - 1.0})
    app.send_task("t.infer", (4,), headers={"enqueued_at": stamp - 0.5})
    assert r.llen("celery\x06\x166") == 1  # the layout the transport really wrote
    sampler = make_sampler([("p", CelerySettings(url=redis_url))])
    obs = (await sampler.sample())["p"]
    assert (obs.depth, obs.in_flight) == (4, 0)
    assert obs.oldest_wait_s == pytest.approx(8.5, abs=1e-3)

    with app.connection_for_read() as conn:  # kombu's own consumer: delivered, not acked
        message = conn.default_channel.basic_get("celery\x06\x166", no_ack=False)
        assert message is not None
        assert r.hlen("unacked") == 1
        taken = (await sampler.sample())["p"]
        assert (taken.depth, taken.in_flight) == (3, 1)
        assert taken.oldest_wait_s == pytest.approx(3.0, abs=1e-3)
        other = make_sampler([
            ("all", CelerySettings(url=redis_url, key="gpu", in_flight="all")),
            ("none", CelerySettings(url=redis_url, key="gpu", in_flight="none")),
            ("routed", CelerySettings(url=redis_url, key="gpu")),
        ])
        counted = await other.sample()  # another queue on the same database
        assert (counted["all"].in_flight, counted["none"].in_flight) == (1, None)
        assert counted["routed"].in_flight == 0
        message.ack()
    assert (await sampler.sample())["p"].in_flight == 0


async def test_celery_without_the_header_counts_depth_with_an_unknown_wait(
    redis_url: str, make_sampler: MakeSampler
) -> None:
    app = celery_app(redis_url)
    app.send_task("t.infer", (1,), queue="gpu", headers={"other": {"enqueued_at": 1.0}})
    sampler = make_sampler([("p", CelerySettings(url=redis_url, key="gpu"))])
    obs = (await sampler.sample())["p"]
    assert (obs.depth, obs.oldest_wait_s) == (1, None)


async def test_all_kinds_on_one_server_share_one_round_trip(
    redis_url: str, r: redis.Redis, clock: ManualClock, make_sampler: MakeSampler
) -> None:
    r.lpush("plain", '{"enqueued_at": %f}' % (clock.wall() - 2))
    due = time.time() - 4  # arq compares with the Redis server's clock, not the daemon's
    r.zadd("arq:queue", {"j": due * 1000})
    sampler = make_sampler([
        ("list", RedisListSettings(url=redis_url, key="plain")),
        ("arq", ArqSettings(url=redis_url)),
        ("rq", RqSettings(url=redis_url, key="default")),
        ("celery", CelerySettings(url=redis_url)),
    ])
    obs = await sampler.sample()
    assert {name: o.depth for name, o in obs.items()} == {"list": 1, "arq": 1, "rq": 0,
                                                          "celery": 0}
    assert obs["arq"].oldest_wait_s == pytest.approx(clock.wall() - due, abs=2e-3)
    assert obs["list"].oldest_wait_s == pytest.approx(2.0, abs=1e-3)


def test_two_pools_on_one_rq_queue_are_refused_but_other_prefixes_are_other_queues(
    tmp_path: Path,
) -> None:
    from autoscaler.config.models import load_config
    from autoscaler.ports.errors import ConfigError

    pool = """
  - name: {name}
    queue: {{kind: rq, url: "redis://127.0.0.1:6379/0", key: default{extra}}}
    sla: {{max_wait: 5s}}
    capacity: {{min: 0, max: 2, slots_per_instance: 1}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: local, command: ["true"]}}
"""
    ok = tmp_path / "ok.yaml"
    ok.write_text("pools:" + pool.format(name="a", extra="") +
                  pool.format(name="b", extra=", prefix: other"))
    assert [p.name for p in load_config(ok).pools] == ["a", "b"]
    same = tmp_path / "same.yaml"
    same.write_text("pools:" + pool.format(name="a", extra="") + pool.format(name="b", extra=""))
    with pytest.raises(ConfigError, match="uses the same queue as pool 'a'"):
        load_config(same)
