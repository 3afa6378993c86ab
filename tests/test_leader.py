"""Leader election on the session's real redis-server: the lease, the gate, the fencing check.

The daemons-as-processes half (failover, a stolen lease seen from outside) is in
``test_leader_process.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.leader import LeaderGate, RedisLease
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeProvider

KEY = "test:leader"


async def test_one_holder_at_a_time_and_each_term_gets_a_new_fence(redis_url: str) -> None:
    a, b = RedisLease(redis_url, KEY, 5.0), RedisLease(redis_url, KEY, 5.0)
    try:
        assert await a.acquire() and a.fence == 1
        assert not await b.acquire() and b.token is None
        assert await a.renew() and await a.holds()
        await a.release()
        assert not await a.renew()  # released: nothing left to renew
        assert await b.acquire() and b.fence == 2  # a later term, a larger token
        assert not await a.acquire()
        # a's stale token can neither renew nor release b's lease
        a.token = f"{a.holder}:1"
        assert not await a.renew()
        a.token = f"{a.holder}:1"
        await a.release()
        assert await b.holds()
    finally:
        await a.close()
        await b.close()


async def test_renew_fails_once_the_key_is_taken(redis_url: str) -> None:
    lease = RedisLease(redis_url, KEY, 5.0)
    try:
        assert await lease.acquire()
        redis.Redis.from_url(redis_url).set(KEY, "thief", px=60_000)
        assert not await lease.renew()
        assert lease.token is None
    finally:
        await lease.close()


async def test_gate_opens_on_acquire_and_closes_at_once_on_a_stolen_lease(
    redis_url: str,
) -> None:
    seen: list[bool] = []
    gate = LeaderGate(RedisLease(redis_url, KEY, 2.0), LoopClock(), on_change=seen.append)
    try:
        assert not gate.is_open() and gate.why_closed == "not_leader"
        with capture_logs() as logs:
            await gate.step()
            assert gate.is_open() and await gate.confirm()
            redis.Redis.from_url(redis_url).delete(KEY)
            assert not await gate.confirm()  # the fencing check reads the key itself
            assert not gate.is_open()  # and the gate closes without waiting for a renewal
        assert seen == [False, True, False]
        events = [(e["event"], e.get("reason")) for e in logs]
        assert ("leader_acquired", None) in events and ("leader_lost", "lease_taken") in events
        await gate.step()  # the key is free again: acquired with a new fence
        assert gate.is_open() and gate.lease.fence == 2
    finally:
        await gate.lease.release()
        await gate.lease.close()


async def test_gate_stays_closed_when_another_replica_holds_the_lease(redis_url: str) -> None:
    other = RedisLease(redis_url, KEY, 5.0)
    gate = LeaderGate(RedisLease(redis_url, KEY, 5.0), LoopClock())
    try:
        assert await other.acquire()
        await gate.step()
        assert not gate.is_open() and not await gate.confirm()
    finally:
        await other.close()
        await gate.lease.close()


async def test_a_deposed_leaders_queued_resize_is_dropped(
    redis_url: str, registries: dict[str, Registry[Any]],
) -> None:
    """The tick submits a resize while the local lease still looks valid; the key was taken
    meanwhile, so the actuator's fencing check drops it and the provider sees no resize."""
    registries["providers"].register("fake", FakeProvider)
    config = parse_config(
        "controller: {interval: 1s}\nproviders: {cloud-a: {kind: fake}}\npools:\n"
        "  - name: chat\n    queue: {kind: memory, name: q-leader}\n"
        "    sla: {max_wait: 2s}\n    capacity: {min: 0, max: 20}\n"
        "    behavior: {scale_up: {rules: []}}\n    policy: {kind: threshold}\n"
        "    groups: [{name: g, provider: cloud-a}]\n",
        registries=registries,
    )
    queue = reset_queue("q-leader")
    for _ in range(3):
        queue.put(time.time(), 1.0)
    gate = LeaderGate(RedisLease(redis_url, KEY, 5.0), LoopClock())
    daemon = Daemon.build(config, registries=registries, gate=gate)
    await daemon.start()
    try:
        await gate.step()
        assert gate.is_open()
        redis.Redis.from_url(redis_url).set(KEY, "thief", px=60_000)
        with capture_logs() as logs:
            [tick] = await daemon.loop.tick()
            assert tick.submitted == ("g",)  # the local lease had not yet expired
            await daemon.loop.settle()
        resizes = [c for c in FakeProvider.clients["cloud-a"].calls if c.operation == "resize"]
        assert resizes == []
        assert any(e["event"] == "resize_dropped" for e in logs)
        assert not gate.is_open()
        [tick] = await daemon.loop.tick()
        assert tick.decision is not None and not tick.acted  # standby: decides, never acts
    finally:
        await daemon.close(1.0)
        await gate.lease.close()


@pytest.mark.parametrize(("block", "message"), [
    ("{key: k}", "url"),
    ("{url: 'http://h/0'}", "must be redis://"),
    ("{url: 'redis://h/0', ttl: 10ms}", "ttl"),
])
def test_bad_leader_election_blocks_are_refused(
    block: str, message: str, registries: dict[str, Registry[Any]],
) -> None:
    text = (f"controller: {{leader_election: {block}}}\npools:\n  - name: chat\n"
            "    queue: {kind: memory, name: q}\n    sla: {max_wait: 2s}\n"
            "    capacity: {min: 0, max: 2}\n    groups: [{name: g, provider: local}]\n")
    with pytest.raises(ConfigFileError) as caught:
        parse_config(text, registries=registries)
    assert message in str(caught.value) and ":1:" in str(caught.value)


async def test_the_actor_runs_before_release_with_the_gate_open_then_releases(
    redis_url: str,
) -> None:
    """A planned handover: the daemon's final state flush (only the actor may write) runs
    before the lease goes, while the gate is still open; a standby never runs it."""
    gate = LeaderGate(RedisLease(redis_url, KEY, 5.0), LoopClock())
    seen: list[tuple[bool, bool]] = []

    async def flush() -> None:
        held = redis.Redis.from_url(redis_url).exists(KEY)
        seen.append((gate.is_open(), bool(held)))

    stop = asyncio.Event()
    task = asyncio.create_task(gate.run(stop, before_release=flush))
    for _ in range(200):
        if gate.is_open():
            break
        await asyncio.sleep(0.01)
    assert gate.is_open()
    stop.set()
    await task
    assert seen == [(True, True)]  # the gate was open and the lease held during the flush
    assert not gate.is_open() and not redis.Redis.from_url(redis_url).exists(KEY)

    standby_calls: list[bool] = []
    other = RedisLease(redis_url, KEY, 5.0)
    assert await other.acquire()
    try:
        standby = LeaderGate(RedisLease(redis_url, KEY, 5.0), LoopClock())

        async def never() -> None:
            standby_calls.append(True)

        stop2 = asyncio.Event()
        task2 = asyncio.create_task(standby.run(stop2, before_release=never))
        await asyncio.sleep(0.05)
        stop2.set()
        await task2
        assert standby_calls == []
    finally:
        await other.close()
