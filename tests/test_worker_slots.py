"""``autoscaler worker --slots N``: N requests at once, each kind, with the guarantees of one.

Real ``autoscaler worker`` processes against the session's real redis-server; the sampler's
in-flight count is read through the autoscaler's own Lua probe (``source_in_flight``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from autoscaler.cli.worker import worker
from autoscaler.config.models import parse_config
from autoscaler.config.providers import managed_group
from autoscaler.emulator.worker import slot_consumers
from autoscaler.ports.clock import ManualClock
from autoscaler.providers.local.client import LocalGroup
from autoscaler.registry import Registry
from autoscaler.sources.memory import reset_queue
from autoscaler.sources.redis.reclaim import Membership, renew_together
from tests.test_worker import (
    GROUP,
    KINDS,
    WorkerProcess,
    completed,
    enqueue,
    in_flight,
    source_in_flight,
    wait_until,
    waiting,
)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def start(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Like ``tests.test_worker.start``, with ``AUTOSCALER_SLOTS`` settable per process."""
    started: list[WorkerProcess] = []

    def launch(kind: str, key: str, *extra: str, slots_env: str | None = None) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if k != "AUTOSCALER_SLOTS"}
        if slots_env is not None:
            env["AUTOSCALER_SLOTS"] = slots_env
        process = WorkerProcess(tmp_path / f"worker-{len(started)}.log", redis_url, kind, key,
                                *extra, env=env)
        started.append(process)
        return process

    yield launch
    for process in started:
        process.kill()


def test_slot_consumer_names() -> None:
    assert slot_consumers("gpu-7", 1) == ["gpu-7"]  # the name workers had before slots
    assert slot_consumers("gpu-7", 3) == ["gpu-7/0", "gpu-7/1", "gpu-7/2"]
    with pytest.raises(ValueError, match="at least 1 slot"):
        slot_consumers("gpu-7", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_two_slots_serve_two_at_once_and_a_kill_strands_neither(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess], kind: str
) -> None:
    """A 2-slot worker holds 2 requests; SIGKILL; another worker serves both exactly once."""
    enqueue(r, kind, "q", [{}, {}])  # no service_s: each worker's --service-time applies
    victim = start(kind, "q", "--slots", "2", "--heartbeat", "1", "--service-time", "3600",
                   "--consumer", "v")
    wait_until(lambda: in_flight(r, kind, "q") == 2, "the victim serves both requests")
    assert source_in_flight(redis_url, kind, "q") == 2  # what the daemon would see
    assert waiting(r, kind, "q") == 0
    assert r.smembers("q:consumers") == {b"v/0", b"v/1"}
    victim.kill()  # SIGKILL: no chance to settle or to leave

    rescuer = start(kind, "q", "--slots", "2", "--heartbeat", "1", "--service-time", "0",
                    "--consumer", "w")
    wait_until(lambda: completed(r, "q") == 2 and in_flight(r, kind, "q") == 0
               and waiting(r, kind, "q") == 0, "both stranded requests are served")
    assert rescuer.stop() == 0
    assert completed(r, "q") == 2 and r.llen("q:dead") == 0
    events = rescuer.events()
    assert [e["event"] for e in events].count("request_completed") == 2  # once each
    reclaimed = [e for e in events if e["event"] == "requests_reclaimed"]
    assert sum(e["requests"] for e in reclaimed) == 2
    assert sorted(c for e in reclaimed for c in e["consumers"]) == ["v/0", "v/1"]
    assert r.smembers("q:consumers") == set()
    assert list(r.scan_iter("q:alive:*")) == [] and list(r.scan_iter("q:inflight*")) == []
    if kind == "redis-stream":
        assert r.xinfo_consumers("q", GROUP) == []


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_finishes_every_request_in_flight_then_exits_0(
    r: redis.Redis, start: Callable[..., WorkerProcess], kind: str
) -> None:
    enqueue(r, kind, "q", [{"service_s": 4}] * 5)  # long enough to signal while both serve
    process = start(kind, "q", "--slots", "2")
    wait_until(lambda: in_flight(r, kind, "q") == 2, "both slots are serving")

    assert process.stop() == 0
    assert (completed(r, "q"), waiting(r, kind, "q")) == (2, 3)  # finished both, took no more
    assert in_flight(r, kind, "q") == 0 and r.llen("q:dead") == 0
    events = [e["event"] for e in process.events()]
    stopping = events.index("worker_stopping")
    assert events[stopping + 1:] == ["request_completed", "request_completed", "worker_stopped"]
    assert r.smembers("q:consumers") == set()  # both slots left


def test_slots_default_to_autoscaler_slots_from_the_environment(
    r: redis.Redis, redis_url: str, start: Callable[..., WorkerProcess]
) -> None:
    """The ``local`` provider sets AUTOSCALER_SLOTS to the pool's slots_per_instance."""
    enqueue(r, "redis-list", "q", [{}] * 4)
    process = start("redis-list", "q", "--service-time", "3600", slots_env="3")
    wait_until(lambda: in_flight(r, "redis-list", "q") == 3, "three slots are serving")
    assert source_in_flight(redis_url, "redis-list", "q") == 3
    assert waiting(r, "redis-list", "q") == 1
    assert len(r.smembers("q:consumers")) == 3
    started = [e for e in process.events() if e["event"] == "worker_started"]
    assert [e["slots"] for e in started] == [3]
    process.kill()


@pytest.mark.parametrize(("args", "env"), [(["--slots", "0"], {}), ([], {"AUTOSCALER_SLOTS": "x"})])
def test_bad_slot_count_exits_2_naming_the_option(args: list[str], env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        worker, ["--url", "redis://127.0.0.1:1/0", "--kind", "redis-list", "--key", "q", *args],
        env=env,
    )
    assert result.exit_code == 2
    assert "--slots" in result.output


def test_a_stopped_worker_leaves_nothing_behind_with_several_slots(
    r: redis.Redis, start: Callable[..., WorkerProcess]
) -> None:
    """An idle 4-slot stream worker: SIGINT; its four consumers leave the group cleanly."""
    enqueue(r, "redis-stream", "s", [{"service_s": 0}] * 6)
    process = start("redis-stream", "s", "--slots", "4")
    wait_until(lambda: completed(r, "s") == 6, "all six are served")
    assert process.stop(signal.SIGINT) == 0
    assert r.smembers("s:consumers") == set() and r.xinfo_consumers("s", GROUP) == []


def test_a_key_of_the_wrong_type_fails_every_slot_with_one_clear_event(
    r: redis.Redis, start: Callable[..., WorkerProcess]
) -> None:
    r.set("q", "a string, not a list")
    process = start("redis-list", "q", "--slots", "3")
    assert process.proc.wait(timeout=60) == 1
    failed = [e for e in process.events() if e["event"] == "worker_failed"]
    assert len(failed) == 1 and "WRONGTYPE" in failed[0]["error"]


async def test_in_process_instances_of_the_memory_queue_serve_their_slots(
    registries: dict[str, Registry[Any]],
) -> None:
    """The demo's default fleet (no command): 3 instances x 2 slots hold 6 requests at once;
    closed past the drain deadline, they give every request back."""
    text = """
pools:
  - name: p
    queue: {kind: memory, name: slots}
    sla: {max_wait: 2s}
    capacity: {max: 10, boot_time: 0s, slots_per_instance: 2}
    groups: [{name: g, provider: local}]
"""
    pool = parse_config(text, registries=registries).pools[0]
    clock = ManualClock()
    queue = reset_queue("slots")
    for _ in range(10):
        queue.put(clock.wall(), 3600.0)
    provider = LocalGroup(managed_group(pool, pool.groups[0]), clock)
    try:
        await provider.resize(3)
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while queue.in_flight < 6 and loop.time() < end:
            await asyncio.sleep(0.02)
        assert (queue.in_flight, len(queue)) == (6, 4)
    finally:
        await provider.close(0.1)
    assert (queue.in_flight, len(queue), queue.completed_total) == (0, 10, 0)


async def test_slots_are_renewed_together_in_one_transaction(
    r: redis.Redis, redis_url: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    other = aioredis.Redis.from_url(redis_url)
    try:
        slots = [Membership(client, "list", "q", name, 5.0) for name in slot_consumers("w", 3)]
        await renew_together(slots)
        assert r.smembers("q:consumers") == {b"w/0", b"w/1", b"w/2"}
        assert all(0 < int(r.pttl(f"q:alive:w/{i}")) <= 5000 for i in range(3))
        with pytest.raises(ValueError, match="share one client"):
            await renew_together([*slots, Membership(other, "list", "q", "x", 5.0)])
        assert not r.exists("q:alive:x")
    finally:
        await client.aclose()
        await other.aclose()
