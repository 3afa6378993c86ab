"""Without leader election each daemon acts: two on the same pools must see each other.

In-process: the heartbeat on the real redis-server (overlap, other pools, stale records, a
closed gate). As processes: two ``autoscaler run`` on the same pool both warn, naming the
other's pid, and the gauge returns to 0 when one stops."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from autoscaler.config.models import parse_config
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.peers import KEY, PeerWatch
from autoscaler.testing import free_port
from tests.test_leader_process import Replica, metrics

POOLS = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", state_store: none}}
pools:
{pools}
"""
POOL = """
  - name: {name}
    queue: {{kind: redis-list, url: "{url}", key: "q:{name}"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 3}}
    groups: [{{name: main, provider: local, command: ["true"]}}]
"""


def daemon(registries: dict[str, Registry[Any]], url: str, *names: str,
           dry_run: bool = False) -> Daemon:
    text = POOLS.format(port=free_port(), pools="".join(
        POOL.format(name=n, url=url) for n in names))
    return Daemon.build(parse_config(text, registries=registries), registries=registries,
                        dry_run=dry_run)


async def test_daemons_on_a_shared_pool_see_each_other(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).delete(KEY)
    telemetry = PrometheusTelemetry()
    one = PeerWatch(daemon(registries, redis_url, "chat", "code"), telemetry=telemetry)
    two = PeerWatch(daemon(registries, redis_url, "code", "batch"))
    other = PeerWatch(daemon(registries, redis_url, "batch"))
    standby = PeerWatch(daemon(registries, redis_url, "chat", dry_run=True))
    try:
        assert await one.step() == []  # alone so far
        await standby.step()  # a closed gate writes nothing
        [peer] = await two.step()
        assert (peer.id, peer.pools) == (one.id, ("code",))
        [peer] = await one.step()
        assert (peer.id, peer.pools, peer.pid) == (two.id, ("code",), two.pid)
        assert telemetry.registry.get_sample_value("autoscaler_other_daemons_acting") == 1
        assert [p.id for p in await other.step()] == [two.id]  # batch: not one's
        await two.close()  # a stopping daemon deletes its record
        assert await one.step() == []
        assert telemetry.registry.get_sample_value("autoscaler_other_daemons_acting") == 0
    finally:
        for watch in (one, two, other, standby):
            await watch.close()


async def test_one_queue_under_two_pool_names_is_seen(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """Two daemons that name the same queue differently still resize for one workload."""
    redis.Redis.from_url(redis_url).delete(KEY)
    renamed = POOL.format(name="llm", url=redis_url).replace('key: "q:llm"', 'key: "q:chat"')
    text = POOLS.format(port=free_port(), pools=renamed)
    one = PeerWatch(daemon(registries, redis_url, "chat"))
    two = PeerWatch(Daemon.build(parse_config(text, registries=registries),
                                 registries=registries))
    other = PeerWatch(daemon(registries, redis_url, "code"))
    try:
        await one.step()
        await other.step()
        [peer] = await two.step()  # pool "llm" reads q:chat, as one's pool "chat" does
        assert (peer.id, peer.pools) == (one.id, ("llm",))
        assert [p.id for p in await one.step()] == [two.id]
        assert await other.step() == []
    finally:
        for watch in (one, two, other):
            await watch.close()


async def test_stale_and_foreign_records_are_ignored_and_pruned(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(KEY)
    now = time.time()
    client.hset(KEY, mapping={
        "recent-but-stale": json.dumps({"wall": now - 10, "period_s": 1, "pools": ["chat"]}),
        "ancient": json.dumps({"wall": now - 3600, "period_s": 1, "pools": ["chat"]}),
        "garbage": "not json",
    })
    watch = PeerWatch(daemon(registries, redis_url, "chat"))
    try:
        assert await watch.step() == []
        assert {k.decode() for k in client.hkeys(KEY)} == {"recent-but-stale", watch.id}
    finally:
        await watch.close()
    assert {k.decode() for k in client.hkeys(KEY)} == {"recent-but-stale"}


def test_two_acting_daemons_warn_about_each_other(tmp_path: Path, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).delete(KEY)
    a = b = None
    try:
        a = Replica(tmp_path, "a", redis_url, leader_election=False)
        b = Replica(tmp_path, "b", redis_url, leader_election=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = [a.sample(), b.sample()]
            if all(m and m.get("autoscaler_other_daemons_acting") == 1 for m in seen):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the daemons never saw each other: " + a.log.read_text()[-800:])
        for me, them in ((a, b), (b, a)):
            [warning, *_] = [e for e in me.events() if e["event"] == "other_daemon_acting"]
            assert warning["other_pid"] == them.proc.pid and warning["pools"] == ["chat"]
            assert warning["other_metrics"] == f"127.0.0.1:{them.port}"
        b.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (metrics(a.port) or {}).get("autoscaler_other_daemons_acting") == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the warning never cleared after the other daemon stopped")
        assert any(e["event"] == "other_daemon_gone" for e in a.events())
    finally:
        for replica in (a, b):
            if replica is not None:
                replica.stop()
    assert a.proc.returncode == 0 and b.proc.returncode == 0
