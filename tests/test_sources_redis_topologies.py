"""The queue sampler on a unix socket, behind Redis Sentinel (through a failover) and on a Redis
Cluster, each a real redis-server topology started by the test (tests/redis_topologies.py)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis
from pydantic import BaseModel

from autoscaler.ports.clock import ManualClock
from autoscaler.sources.redis.lists import RedisListSettings
from autoscaler.sources.redis.sampler import RedisSampler
from tests import redis_topologies as topo

MakeSampler = Callable[[list[tuple[str, BaseModel]]], RedisSampler]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=0.0, wall_offset=1_800_000_000.0)


@pytest.fixture
async def make_sampler(clock: ManualClock) -> AsyncIterator[MakeSampler]:
    samplers: list[RedisSampler] = []

    def make(pools: list[tuple[str, BaseModel]]) -> RedisSampler:
        samplers.append(RedisSampler(pools, clock, 2.0))
        return samplers[-1]

    yield make
    for sampler in samplers:
        await sampler.close()


def job(at: float) -> str:
    return json.dumps({"enqueued_at": at})


async def test_unix_socket(clock: ManualClock, make_sampler: MakeSampler) -> None:
    with tempfile.TemporaryDirectory(prefix="autoscaler-sock-") as tmp:
        sock = Path(tmp) / "redis.sock"
        with topo.server(unix=sock):
            client = redis.Redis(unix_socket_path=str(sock), db=2)
            client.lpush("q", job(clock.wall() - 4.0), job(clock.wall() - 1.0))
            client.close()
            sampler = make_sampler([("p", RedisListSettings(url=f"unix://{sock}?db=2", key="q"))])
            obs = (await sampler.sample())["p"]
            assert (obs.depth, obs.oldest_wait_s, obs.fresh) == (2, 4.0, True)


async def test_sentinel_finds_the_master_and_follows_a_failover(
    clock: ManualClock, make_sampler: MakeSampler
) -> None:
    with topo.sentinel_pair("gpu") as (master, replica, sentinel, _stack):
        primary = redis.Redis(port=master)
        primary.lpush("q", job(clock.wall() - 2.0))
        url = f"redis+sentinel://127.0.0.1:{sentinel}/gpu/0"
        sampler = make_sampler([("p", RedisListSettings(url=url, key="q"))])
        assert (await sampler.sample())["p"].depth == 1

        watcher = redis.Redis(port=sentinel, decode_responses=True)
        topo.wait_until(lambda: int(watcher.info("sentinel")["sentinel_masters"]) == 1,
                        "sentinel to watch the master")
        topo.wait_until(lambda: redis.Redis(port=replica).info("replication")[
            "master_link_status"] == "up", "the replica to sync")
        watcher.execute_command("SENTINEL", "FAILOVER", "gpu")
        topo.wait_until(
            lambda: watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "gpu")[1]
            == str(replica), "the failover", timeout_s=20)
        promoted = redis.Redis(port=replica)
        topo.wait_until(lambda: promoted.info("replication")["role"] == "master", "promotion")
        promoted.lpush("q", job(clock.wall() - 1.0))
        primary.shutdown(nosave=True)  # the old master is gone for good
        primary.close()

        observed = []
        for _ in range(3):  # the first round after the failover may fail on the old connection
            clock.advance(1.0)
            observed.append((await sampler.sample())["p"])
            if observed[-1].fresh:
                break
        assert observed[-1].fresh and observed[-1].depth == 2
        promoted.close()
        watcher.close()


async def test_cluster_routes_one_call_per_slot_and_reads_each_pools_companions(
    clock: ManualClock, make_sampler: MakeSampler
) -> None:
    from redis.cluster import RedisCluster

    from autoscaler.sources.redis.streams import RedisStreamSettings
    from autoscaler.sources.redis.zsets import RedisZsetSettings

    with topo.cluster(3) as ports:
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        keys = [f"{{gpu-{i}}}:requests" for i in range(12)]  # tags spread over the 3 nodes
        assert len({client.keyslot(k) for k in keys}) == 12
        for i, key in enumerate(keys):
            client.lpush(key, *(job(clock.wall() - 10.0 - i) for _ in range(i + 1)))
            client.set(f"{key}:completed", 5)
        client.zadd("{z}", {json.dumps({"id": 1}): clock.wall() - 3.0})
        client.xadd("{s}", {"f": "v"}, id=f"{int((clock.wall() - 2.0) * 1000)}-0")
        client.close()
        url = ",".join(f"127.0.0.1:{p}" for p in ports)
        pools: list[tuple[str, BaseModel]] = [
            (key, RedisListSettings(url=f"redis+cluster://{url}", key=key)) for key in keys
        ]
        pools.append(("z", RedisZsetSettings(url=f"redis+cluster://{url}", key="{z}")))
        pools.append(("s", RedisStreamSettings(url=f"redis+cluster://{url}", key="{s}",
                                               group="g")))
        sampler = make_sampler(pools)
        first = await sampler.sample()
        clock.advance(2.0)
        second = await sampler.sample()
        for i, key in enumerate(keys):
            assert (first[key].depth, first[key].oldest_wait_s) == (i + 1, 10.0 + i)
            assert second[key].completion_rate == 0.0 and second[key].fresh
        assert (first["z"].depth, first["z"].oldest_wait_s) == (1, 3.0)
        assert (first["s"].depth, first["s"].oldest_wait_s) == (1, 2.0)


def test_cluster_settings_need_hash_tags_and_refuse_single_server_libraries() -> None:
    from pydantic import ValidationError

    from autoscaler.sources.redis.rq_jobs import RqSettings

    url = "redis+cluster://127.0.0.1:7000"
    with pytest.raises(ValidationError, match=r"needs a \{hash tag\}"):
        RedisListSettings(url=url, key="requests")
    with pytest.raises(ValidationError, match="rq queues do not run on Redis Cluster"):
        RqSettings(url=url, key="{default}")
    assert RedisListSettings(url=url, key="{gpu}:requests").key == "{gpu}:requests"


def test_a_real_worker_serves_a_list_over_a_unix_socket_and_through_sentinel() -> None:
    """``autoscaler worker`` takes the same URL forms: it drains a list on a unix socket, and
    one behind a Sentinel (exactly once each, counted in ``:completed``)."""
    import subprocess
    import sys
    import time

    cli = str(Path(sys.executable).parent / "autoscaler")

    def drain(url: str, client: redis.Redis) -> None:
        client.lpush("q", *(json.dumps({"enqueued_at": time.time(), "service_s": 0.01})
                            for _ in range(5)))
        proc = subprocess.Popen([cli, "worker", "--url", url, "--kind", "redis-list",
                                 "--key", "q", "--block", "0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            topo.wait_until(lambda: client.get("q:completed") == b"5" or proc.poll() is not None,
                            "the worker to drain the queue", timeout_s=60)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert client.get("q:completed") == b"5", err.decode()[-2000:]
        assert client.llen("q") == 0

    with tempfile.TemporaryDirectory(prefix="autoscaler-sock-") as tmp:
        sock = Path(tmp) / "redis.sock"
        with topo.server(unix=sock):
            client = redis.Redis(unix_socket_path=str(sock), db=1)
            drain(f"unix://{sock}?db=1", client)
            client.close()
    with topo.sentinel_pair("gpu") as (master, _replica, sentinel, _stack):
        client = redis.Redis(port=master)
        drain(f"redis+sentinel://127.0.0.1:{sentinel}/gpu", client)
        client.close()


async def test_the_pause_store_works_behind_a_sentinel_url() -> None:
    """The pause hash lives in the state store, which accepts Sentinel URLs: its client must
    be built for them too (a plain ``from_url`` cannot parse a Sentinel URL)."""
    from autoscaler.runtime.pause import PauseStore

    with topo.sentinel_pair("gpu") as (master, _replica, sentinel, _stack):
        watcher = redis.Redis(port=sentinel, decode_responses=True)
        topo.wait_until(lambda: int(watcher.info("sentinel")["sentinel_masters"]) == 1,
                        "sentinel to watch the master")
        store = PauseStore(f"redis+sentinel://127.0.0.1:{sentinel}/gpu", prefix="t:",
                           timeout_s=2.0)
        try:
            assert await store.pause("chat", since=1.0, reason="maintenance")
            assert list(await store.paused()) == ["chat"]
            assert redis.Redis(port=master).hexists("t:paused", "chat")  # on the master
            assert await store.resume("chat")
            assert await store.paused() == {}
        finally:
            await store.close()
            watcher.close()
