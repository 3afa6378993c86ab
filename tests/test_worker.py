"""The real ``autoscaler worker`` process against a real redis-server, for each queue kind."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from autoscaler.cli.worker import worker
from autoscaler.emulator.queues import ZsetQueue
from autoscaler.ports.clock import ManualClock
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.reclaim import Membership
from autoscaler.sources.redis.sampler import RedisSampler
from autoscaler.sources.redis.streams import RedisStreamSettings
from autoscaler.sources.redis.zsets import RedisZsetSettings

AUTOSCALER = Path(sys.executable).parent / "autoscaler"
KINDS = ["redis-list", "redis-stream", "redis-zset"]
GROUP = "workers"
DEADLINE_S = 60.0
"""How long to wait for the worker to reach a state: generous, never a timed assertion."""


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class WorkerProcess:
    """One ``autoscaler worker`` subprocess with its JSON log captured in a file."""

    def __init__(self, log_path: Path, url: str, kind: str, key: str, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        args = [str(AUTOSCALER), "worker", "--url", url, "--kind", kind, "--key", key,
                "--block", "0.1", *extra]
        if kind == "redis-stream":
            args += ["--group", GROUP]
        with log_path.open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=env)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal once the worker handles signals (it says ``worker_started`` after installing
        its handlers): a busy machine can still be importing when the queue is already drained
        by another worker, and the default action of SIGTERM would then kill it."""
        wait_until(lambda: self.proc.poll() is not None
                   or '"worker_started"' in self.log_path.read_text(), "the worker is started")
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=DEADLINE_S)

    def events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def launch(kind: str, key: str, *extra: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        process = WorkerProcess(log_path, redis_url, kind, key, *extra)
        started.append(process)
        return process

    yield launch
    for process in started:
        process.kill()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def enqueue(r: redis.Redis, kind: str, key: str, payloads: list[dict[str, Any] | str]) -> None:
    """Follow each kind's producer convention; a ``str`` payload is pushed raw (not JSON)."""
    if kind == "redis-stream":
        r.xgroup_create(key, GROUP, id="0", mkstream=True)
    for i, payload in enumerate(payloads):
        if isinstance(payload, str):
            if kind == "redis-list":
                r.lpush(key, payload)
            elif kind == "redis-zset":
                r.zadd(key, {payload: 1_700_000_000 + i})
            continue
        body = {"id": i, "enqueued_at": time.time(), **payload}
        if kind == "redis-list":
            r.lpush(key, json.dumps(body))
        elif kind == "redis-zset":
            r.zadd(key, {json.dumps(body): 1_700_000_000 + i})
        else:
            r.xadd(key, {k: str(v) for k, v in body.items()})


def waiting(r: redis.Redis, kind: str, key: str) -> int:
    if kind == "redis-list":
        return int(r.llen(key))
    if kind == "redis-zset":
        return int(r.zcard(key))
    return int(r.xinfo_groups(key)[0]["lag"])


def in_flight(r: redis.Redis, kind: str, key: str) -> int:
    if kind == "redis-list":  # every processing list, registered or not
        return sum(int(r.llen(k)) for k in r.scan_iter(f"{key}:processing*"))
    if kind == "redis-zset":
        return int(r.hlen(f"{key}:inflight"))
    return int(r.xinfo_groups(key)[0]["pending"])


def completed(r: redis.Redis, key: str) -> int:
    return int(r.get(f"{key}:completed") or 0)


@pytest.mark.parametrize("kind", KINDS)
def test_two_workers_drain_the_queue_exactly_once_and_bury_bad_payloads(
    r: redis.Redis, start: Callable[..., WorkerProcess], kind: str
) -> None:
    good: list[dict[str, Any] | str] = [{"service_s": 0.01}] * 30
    bad: list[dict[str, Any] | str] = [{"service_s": "soon"}]
    if kind != "redis-stream":  # stream entries are field maps: they cannot be "not JSON"
        bad.append("not json")
    enqueue(r, kind, "q", [*good[:15], *bad, *good[15:]])
    workers = [start(kind, "q"), start(kind, "q")]

    wait_until(
        lambda: completed(r, "q") == 30 and r.llen("q:dead") == len(bad)
        and waiting(r, kind, "q") == 0 and in_flight(r, kind, "q") == 0,
        "the queue is drained",
    )
    assert [w.stop() for w in workers] == [0, 0]
    assert completed(r, "q") == 30
    served = [e["served"] for w in workers for e in w.events() if e["event"] == "worker_stopped"]
    assert len(served) == 2 and sum(served) == 30
    reasons = {e["reason"] for w in workers for e in w.events() if e["event"] == "request_dead"}
    expected = {"service_s is not a number", "payload is not JSON"}
    assert reasons == (expected if len(bad) == 2 else {"service_s is not a number"})
    buried = [b if isinstance(b, bytes) else b.encode() for b in r.lrange("q:dead", 0, -1)]
    assert any(b'"service_s": "soon"' in b for b in buried)


@pytest.mark.parametrize(
    ("kind", "sig"),
    [*((k, signal.SIGTERM) for k in KINDS), ("redis-list", signal.SIGINT)],
)
def test_stop_signal_finishes_the_current_request_and_takes_no_other(
    r: redis.Redis, start: Callable[..., WorkerProcess], kind: str, sig: int
) -> None:
    enqueue(r, kind, "q", [{"service_s": 1.5}] * 4)
    process = start(kind, "q")
    wait_until(lambda: in_flight(r, kind, "q") == 1, "a request is being served")

    assert process.stop(sig) == 0
    done, left = completed(r, "q"), waiting(r, kind, "q")
    assert done >= 1 and left >= 1 and done + left == 4  # nothing lost, nothing extra taken
    assert in_flight(r, kind, "q") == 0 and r.llen("q:dead") == 0
    events = [e["event"] for e in process.events()]
    stopping = events.index("worker_stopping")
    assert events[stopping + 1 :] == ["request_completed", "worker_stopped"]


@pytest.mark.parametrize("kind", ["redis-stream", "redis-zset"])
def test_restarted_consumer_first_finishes_what_it_had_in_flight(
    r: redis.Redis, start: Callable[..., WorkerProcess], kind: str
) -> None:
    enqueue(r, kind, "q", [{"service_s": 0}] * 2)
    # A consumer named "gpu-1" took a request and died before settling it.
    if kind == "redis-stream":
        r.xreadgroup(GROUP, "gpu-1", {"q": ">"}, count=1)
    else:
        member = r.zpopmin("q")[0][0]
        r.hset("q:inflight", "gpu-1", member)
    assert in_flight(r, kind, "q") == 1

    process = start(kind, "q", "--consumer", "gpu-1")
    wait_until(lambda: completed(r, "q") == 2, "both requests are completed")
    assert process.stop() == 0
    assert (waiting(r, kind, "q"), in_flight(r, kind, "q")) == (0, 0)
    assert "request_resumed" in [e["event"] for e in process.events()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "redis-stream", "--key", "s"], "--group: is required"),
        (["--kind", "redis-list", "--key", "q", "--group", "g"], "redis-stream only"),
        (["--kind", "redis-list", "--key", "q", "--service-time", "-1"], "--service-time"),
        (["--kind", "redis-queue", "--key", "q"], "--kind"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(args: list[str], message: str) -> None:
    result = CliRunner().invoke(worker, ["--url", "redis://127.0.0.1:1/0", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_url_is_rejected_without_showing_the_password() -> None:
    result = CliRunner().invoke(
        worker, ["--url", "http://u:pw1234@h/0", "--kind", "redis-list", "--key", "q"]
    )
    assert result.exit_code == 2
    assert "--url" in result.output and "pw1234" not in result.output


def test_stream_group_deleted_under_the_worker_is_recreated(
    r: redis.Redis, start: Callable[..., WorkerProcess]
) -> None:
    enqueue(r, "redis-stream", "s", [{"service_s": 0}])
    process = start("redis-stream", "s")
    wait_until(lambda: completed(r, "s") == 1, "the first request is completed")
    r.xgroup_destroy("s", GROUP)
    r.xadd("s", {"service_s": "0"})
    # The group comes back at ID 0, so the old entry is served again: at-least-once, never lost.
    wait_until(lambda: completed(r, "s") == 3, "both entries are served by the new group")
    assert process.stop() == 0
    assert completed(r, "s") == 3 and in_flight(r, "redis-stream", "s") == 0
    assert "worker_group_missing" in [e["event"] for e in process.events()]


def test_key_of_the_wrong_type_fails_with_exit_1_and_a_clear_event(
    r: redis.Redis, start: Callable[..., WorkerProcess]
) -> None:
    r.set("q", "a string, not a list")
    process = start("redis-list", "q")
    assert process.proc.wait(timeout=DEADLINE_S) == 1
    failed = [e for e in process.events() if e["event"] == "worker_failed"]
    assert len(failed) == 1 and "WRONGTYPE" in failed[0]["error"]


def test_stream_entry_with_a_binary_field_is_served_not_fatal(
    r: redis.Redis, start: Callable[..., WorkerProcess]
) -> None:
    """Inference requests often carry raw bytes (a tensor); the worker must not die on them,
    or it would die again on every restart when it resumes the same pending entry."""
    r.xgroup_create("s", GROUP, id="0", mkstream=True)
    r.xadd("s", {"service_s": "0", "tensor": b"\xff\xfe\x00binary"})
    process = start("redis-stream", "s")
    wait_until(lambda: completed(r, "s") == 1, "the binary entry is completed")
    assert process.stop() == 0
    assert in_flight(r, "redis-stream", "s") == 0


@pytest.mark.parametrize("kind", ["redis-list", "redis-zset"])
def test_deeply_nested_payload_is_buried_not_fatal(
    r: redis.Redis, start: Callable[..., WorkerProcess], kind: str
) -> None:
    """JSON nested past the parser's recursion limit is a bad payload like any other."""
    enqueue(r, kind, "q", ["[" * 100_000, {"service_s": 0}])
    process = start(kind, "q")
    wait_until(lambda: completed(r, "q") == 1 and r.llen("q:dead") == 1,
               "the good request is completed and the nested one buried")
    assert process.stop() == 0
    assert in_flight(r, kind, "q") == 0


def source_in_flight(url: str, kind: str, key: str) -> int | None:
    """What the autoscaler's source sees (the Lua probe), not what the test computes."""
    settings: Any
    if kind == "redis-list":
        settings = RedisListSettings(url=url, key=key)
    elif kind == "redis-zset":
        settings = RedisZsetSettings(url=url, key=key)
    else:
        settings = RedisStreamSettings(url=url, key=key, group=GROUP)

    async def once() -> int | None:
        sampler = RedisSampler([(key, settings)], ManualClock(start=0.0), 5.0)
        try:
            return (await sampler.sample())[key].in_flight
        finally:
            await sampler.close()

    return asyncio.run(once())


@pytest.mark.parametrize("kind", KINDS)
def test_request_of_a_killed_worker_is_served_once_by_another(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess], kind: str
) -> None:
    """SIGKILL mid-request (an OOM, a lost node): the request is neither lost nor counted as
    in flight forever; the next worker reclaims it once the victim's heartbeat expires."""
    enqueue(r, kind, "q", [{}])  # no service_s: each worker's --service-time applies
    victim = start(kind, "q", "--heartbeat", "1", "--service-time", "3600", "--consumer", "v")
    wait_until(lambda: in_flight(r, kind, "q") == 1, "the victim is serving the request")
    assert source_in_flight(redis_url, kind, "q") == 1
    assert r.smembers("q:consumers") == {b"v"}
    victim.kill()  # SIGKILL: no chance to settle or to leave

    rescuer = start(kind, "q", "--heartbeat", "1", "--service-time", "0", "--consumer", "w")
    wait_until(lambda: completed(r, "q") == 1 and in_flight(r, kind, "q") == 0
               and waiting(r, kind, "q") == 0, "the stranded request is served")
    assert source_in_flight(redis_url, kind, "q") == 0
    assert rescuer.stop() == 0
    assert completed(r, "q") == 1 and r.llen("q:dead") == 0
    events = rescuer.events()
    assert [e["event"] for e in events].count("request_completed") == 1
    reclaimed = [e for e in events if e["event"] == "requests_reclaimed"]
    assert sum(e["requests"] for e in reclaimed) == 1
    assert [c for e in reclaimed for c in e["consumers"]] == ["v"]
    # Nothing is left behind: no registration, heartbeat, marker or consumer of either worker.
    assert r.smembers("q:consumers") == set()
    assert list(r.scan_iter("q:alive:*")) == [] and list(r.scan_iter("q:inflight*")) == []
    if kind == "redis-stream":
        assert r.xinfo_consumers("q", GROUP) == []


def test_killed_list_worker_request_goes_back_to_the_head_of_the_queue(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess]
) -> None:
    """The stranded request is the oldest: it goes to the end workers pop from, before the
    requests queued after it; a second reap (another worker at the same time) moves nothing."""
    enqueue(r, "redis-list", "q", [{"order": 0}])
    victim = start("redis-list", "q", "--heartbeat", "1", "--service-time", "3600",
                   "--consumer", "v")
    wait_until(lambda: in_flight(r, "redis-list", "q") == 1, "the victim is serving")
    victim.kill()
    enqueue(r, "redis-list", "q", [{"order": 1}, {"order": 2}])
    wait_until(lambda: not r.exists("q:alive:v"), "the victim's heartbeat expires")

    async def reap_twice() -> list[tuple[int, list[str]]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            reaper = Membership(client, "list", "q", "reaper", 1.0)
            return [await reaper.reap(), await reaper.reap()]
        finally:
            await client.aclose()

    assert asyncio.run(reap_twice()) == [(1, ["v"]), (0, [])]
    order = [json.loads(raw)["order"] for raw in r.lrange("q", 0, -1)]
    assert order == [2, 1, 0]  # RIGHT is where workers pop: 0 is served next
    assert in_flight(r, "redis-list", "q") == 0 and r.smembers("q:consumers") == set()


def reap_once(url: str, kind: str, key: str) -> tuple[int, list[str]]:
    """One reclaim run as a worker named "reaper" would do it."""
    reclaim_kind: Any = kind.removeprefix("redis-")

    async def run() -> tuple[int, list[str]]:
        client = aioredis.Redis.from_url(url)
        try:
            return await Membership(client, reclaim_kind, key, "reaper", 1.0, GROUP).reap()
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_killed_zset_worker_member_goes_back_with_its_score(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess]
) -> None:
    enqueue(r, "redis-zset", "q", [{}])  # score 1_700_000_000
    victim = start("redis-zset", "q", "--heartbeat", "1", "--service-time", "3600",
                   "--consumer", "v")
    wait_until(lambda: in_flight(r, "redis-zset", "q") == 1, "the victim is serving")
    victim.kill()
    wait_until(lambda: not r.exists("q:alive:v"), "the victim's heartbeat expires")

    assert reap_once(redis_url, "redis-zset", "q") == (1, ["v"])
    entries: Any = r.zrange("q", 0, -1, withscores=True)
    [(member, score)] = entries
    assert score == 1_700_000_000 and json.loads(member)["id"] == 0
    assert in_flight(r, "redis-zset", "q") == 0 and not r.exists("q:inflight:score")


@pytest.mark.parametrize("kind", KINDS)
def test_reaping_never_takes_the_request_of_a_live_worker(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess], kind: str
) -> None:
    """Reclaim goes by heartbeat, not by how long a request has been served."""
    enqueue(r, kind, "q", [{}])
    busy = start(kind, "q", "--heartbeat", "1", "--service-time", "3600", "--consumer", "b")
    wait_until(lambda: in_flight(r, kind, "q") == 1, "the worker is serving")
    assert reap_once(redis_url, kind, "q") == (0, [])
    assert in_flight(r, kind, "q") == 1 and waiting(r, kind, "q") == 0
    assert r.smembers("q:consumers") == {b"b"}
    busy.kill()


async def test_zset_claim_pops_and_marks_in_one_step_and_waits_for_work(
    redis_url: str, r: redis.Redis
) -> None:
    """The pop and the in-flight marks are one script: there is no moment at which the member
    is out of the set and not recorded as this consumer's. An empty queue is polled until a
    member arrives or the block time ends."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        queue = ZsetQueue(client, "zq", "w1", default_s=0.0)
        assert await queue.take(0.05) is None  # empty: gives up after its block time
        r.zadd("zq", {b'{"id": 1}': 17.5, b'{"id": 2}': 18.0})
        job = await queue.take(0.05)
        assert job is not None and job.raw == b'{"id": 1}'
        assert r.zrange("zq", 0, -1) == [b'{"id": 2}']
        assert r.hget("zq:inflight", "w1") == b'{"id": 1}'
        assert float(r.hget("zq:inflight:score", "w1") or 0) == 17.5

        async def produce_later() -> None:
            await asyncio.sleep(0.2)
            await client.zadd("zq2", {b'{"id": 3}': 20.0})

        waiting = ZsetQueue(client, "zq2", "w2", default_s=0.0)
        producer = asyncio.create_task(produce_later())
        job = await waiting.take(30.0)  # arrives while polling: taken long before the block ends
        await producer
        assert job is not None and job.raw == b'{"id": 3}'
        assert r.hget("zq2:inflight", "w2") == b'{"id": 3}'
    finally:
        await client.aclose()
