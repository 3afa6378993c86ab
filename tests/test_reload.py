"""Hot reload in-process: a good file swaps between ticks and keeps surviving pools' state; a bad
one keeps the running config; a removed pool is left alone; a new interval takes effect."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import load_config
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import GroupId
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.leader import LeaderGate, RedisLease
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.reload import ConfigReloader
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeClient, FakeProvider

POOL = """
  - name: {name}
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: {wait}}}
    capacity: {{min: {min}, max: 8, boot_time: 0s}}
    groups: [{{name: main, provider: {account}}}]
"""
HEAD = """
controller: {{interval: {interval}, drain_timeout: 2s}}
providers: {{cloud: {{kind: fake}}, spare: {{kind: fake}}}}
pools:
"""


def write(path: Path, *pools: dict[str, Any], interval: str = "1s") -> None:
    text = HEAD.format(interval=interval)
    for pool in pools:
        text += POOL.format(**{"wait": "2s", "min": 1, "account": "cloud", **pool})
    path.write_text(text)


class Harness:
    def __init__(self, registries: dict[str, Registry[Any]], path: Path) -> None:
        registries["providers"].register("fake", FakeProvider)
        self.clock = ManualClock()
        self.telemetry = PrometheusTelemetry()
        self.path = path

        def build(config: Any) -> Daemon:
            return Daemon.build(config, registries=registries, clock=self.clock,
                                telemetry=self.telemetry)

        self.daemon = build(load_config(path, registries))
        self.reloader = ConfigReloader(self.daemon, path, build, telemetry=self.telemetry,
                                       registries=registries)

    async def ticks(self, n: int) -> None:
        for _ in range(n):
            await self.daemon.loop.tick()
            await self.daemon.loop.settle()
            self.clock.advance(self.daemon.loop.interval_s)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.telemetry.registry.get_sample_value(name, labels or {})


async def test_good_reload_keeps_state_adds_and_changes_pools(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-chat"), reset_queue("r-code"), reset_queue("r-batch")
    write(path, {"name": "chat", "queue": "r-chat"}, {"name": "code", "queue": "r-code"})
    h = Harness(registries, path)
    await h.daemon.start()
    queue = reset_queue("r-chat")
    for _ in range(4):
        queue.put(h.clock.wall(), 1.0)
    await h.ticks(3)
    loop = h.daemon.loop
    chat, code = loop.pools
    chat_state, code_state = chat.state, code.state
    cloud = loop.accounts["cloud"]
    actuator = loop.actuators[GroupId("chat", "main")]
    assert chat.applied_seq > 0

    # code's SLA changes, chat stays as it is, batch is added on its own account
    write(path, {"name": "chat", "queue": "r-chat"},
          {"name": "code", "queue": "r-code", "wait": "5s"},
          {"name": "batch", "queue": "r-batch", "account": "spare", "min": 2})
    with capture_logs() as logs:
        result = await h.reloader.reload("signal")
    assert result.ok, result.errors
    assert (result.kept, result.changed, result.added, result.removed) == (
        ("chat",), ("code",), ("batch",), ())
    assert loop.pools[0] is chat and chat.state is chat_state  # untouched
    assert loop.pools[1] is not code and loop.pools[1].state == code_state  # new controller
    assert loop.pools[1].controller.spec.sla.max_wait_s == 5.0
    assert loop.accounts["cloud"] is cloud and loop.actuators[GroupId("chat", "main")] is actuator
    assert h.daemon.config.pool("code").sla.max_wait == 5.0
    [event] = [e for e in logs if e["event"] == "config_reloaded"]
    assert event["added"] == ["batch"] and event["trigger"] == "signal"
    assert h.sample("autoscaler_config_reloads_total") == 1
    assert h.sample("autoscaler_config_reload_failures_total") == 0
    assert (h.sample("autoscaler_config_last_reload_success_timestamp_seconds") or 0) > 0

    await h.ticks(2)  # the added pool starts on its own account and reaches its min
    spare = FakeProvider.clients["spare"]
    assert len(spare.live(GroupId("batch", "main"))) == 2
    assert h.sample("autoscaler_desired_instances", {"pool": "batch"}) == 2
    await h.daemon.close(1.0)
    await h.reloader.close(1.0)


async def test_bad_reload_keeps_the_running_config(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-bad")
    write(path, {"name": "chat", "queue": "r-bad"})
    h = Harness(registries, path)
    await h.ticks(2)
    running, [chat] = h.daemon.config, h.daemon.loop.pools
    path.write_text(path.read_text().replace("min: 1, max: 8", "min: 9, max: 8"))
    with capture_logs() as logs:
        result = await h.reloader.reload("signal")
    assert not result.ok
    [message] = result.errors
    assert message.startswith(f"{path}:9: pools[0].capacity.max: must be >= min")
    [event] = [e for e in logs if e["event"] == "config_reload_failed"]
    assert event["errors"] == [message] and event["action"] == "kept the running config"
    assert h.daemon.config is running and h.daemon.loop.pools == [chat]
    assert h.sample("autoscaler_config_reload_failures_total") == 1
    assert h.sample("autoscaler_config_reloads_total") == 0

    path.write_text("pools: [\n")  # not even YAML
    result = await h.reloader.reload("signal")
    assert not result.ok and result.errors[0].startswith(f"{path}:")
    await h.ticks(1)  # the loop runs on, on the old config
    assert h.sample("autoscaler_desired_instances", {"pool": "chat"}) == 1
    assert h.sample("autoscaler_config_reload_failures_total") == 2
    await h.daemon.close(1.0)


async def test_a_removed_pool_is_left_alone_and_its_gauges_dropped(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-keep"), reset_queue("r-gone")
    write(path, {"name": "keep", "queue": "r-keep"},
          {"name": "gone", "queue": "r-gone", "account": "spare", "min": 3})
    h = Harness(registries, path)
    await h.ticks(2)
    spare = FakeProvider.clients["spare"]
    gone = GroupId("gone", "main")
    assert len(spare.live(gone)) == 3
    resizes_before = [c for c in spare.calls if c.operation == "resize"]
    write(path, {"name": "keep", "queue": "r-keep"})
    with capture_logs() as logs:
        result = await h.reloader.reload("signal")
    assert result.ok and result.removed == ("gone",)
    assert [e["pool"] for e in logs if e["event"] == "pool_removed"] == ["gone"]
    assert [e["account"] for e in logs if e["event"] == "account_retired"] == ["spare"]
    await h.ticks(2)
    await h.reloader.close(1.0)
    assert [c for c in spare.calls if c.operation == "resize"] == resizes_before
    assert [p.name for p in h.daemon.loop.pools] == ["keep"]
    assert h.sample("autoscaler_desired_instances", {"pool": "gone"}) is None
    assert h.sample("autoscaler_desired_instances", {"pool": "keep"}) == 1
    await h.daemon.close(1.0)


async def test_a_new_interval_takes_effect_and_the_watch_sees_the_file(
    registries: dict[str, Registry[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-watch")
    write(path, {"name": "chat", "queue": "r-watch"})
    h = Harness(registries, path)
    h.reloader.watch, h.reloader.poll_s = True, 0.01
    stop = asyncio.Event()
    task = asyncio.create_task(h.reloader.run(stop))
    await asyncio.sleep(0.05)
    assert h.reloader.successes == h.reloader.failures == 0  # nothing changed: no reload
    write(path, {"name": "chat", "queue": "r-watch", "wait": "3s"}, interval="2s")
    for _ in range(200):
        if h.reloader.successes:
            break
        await asyncio.sleep(0.01)
    assert h.reloader.successes == 1
    assert h.daemon.loop.interval_s == 2.0
    assert h.daemon.loop.pools[0].controller.spec.interval_s == 2.0
    path.write_text(path.read_text() + "bogus: 1\n")
    for _ in range(200):
        if h.reloader.failures:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the same bad file is not retried at every poll
    assert h.reloader.failures == 1
    stop.set()
    await asyncio.wait_for(task, 1.0)
    await h.daemon.close(1.0)


@pytest.mark.parametrize("field", ["metrics_address", "log_level"])
async def test_restart_only_settings_are_named(
    registries: dict[str, Registry[Any]], tmp_path: Path, field: str
) -> None:
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-restart")
    write(path, {"name": "chat", "queue": "r-restart"})
    h = Harness(registries, path)
    value = '"127.0.0.1:9999"' if field == "metrics_address" else "debug"
    path.write_text(path.read_text().replace("drain_timeout: 2s",
                                             f"drain_timeout: 2s, {field}: {value}"))
    with capture_logs() as logs:
        result = await h.reloader.reload("signal")
    assert result.ok and result.needs_restart == (field,)
    assert [e["fields"] for e in logs if e["event"] == "config_reload_needs_restart"] == [[field]]
    await h.daemon.close(1.0)


async def test_pauses_and_budgets_follow_a_reload(
    registries: dict[str, Registry[Any]], tmp_path: Path, redis_url: str
) -> None:
    """The pause gate and the budget step are rebuilt from the new file: a paused pool stays
    paused across the reload and resumes through the new gate; the new budget is exported."""
    from autoscaler.runtime.pause import PauseStore

    path = tmp_path / "autoscaler.yaml"
    queue = reset_queue("r-pause")
    text = f"""
controller: {{interval: 1s, state_store: {{url: "{redis_url}"}}}}
providers: {{cloud: {{kind: fake}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: r-pause}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 8}}
    budget: {{monthly_usd: 1000}}
    groups: [{{name: main, provider: cloud, hourly_price: 2.0}}]
"""
    path.write_text(text)
    h = Harness(registries, path)
    for _ in range(2):
        queue.put(h.clock.wall(), 1.0)
    store = PauseStore(redis_url, prefix="autoscaler:state:", timeout_s=1.0)
    main = GroupId("chat", "main")
    try:
        await h.ticks(1)  # the group's actuator exists from here on
        cloud = h.daemon.loop.accounts["cloud"].client
        assert isinstance(cloud, FakeClient) and len(cloud.live(main)) == 2
        assert await store.pause("chat", since=h.clock.wall(), reason="test")
        await h.ticks(1)  # the running config's gate now holds the pause
        path.write_text(text.replace("max_wait: 2s", "max_wait: 3s")
                        .replace("monthly_usd: 1000", "monthly_usd: 500"))
        result = await h.reloader.reload("signal")
        assert result.ok and result.changed == ("chat",), result.errors
        assert h.daemon.loop.accounts["cloud"].client is cloud  # kept, with its actuator
        for _ in range(2):
            queue.put(h.clock.wall(), 1.0)
        [tick] = await h.daemon.loop.tick()
        await h.daemon.loop.settle()
        assert tick.decision is not None and tick.decision.desired == 4
        assert len(cloud.live(main)) == 2  # still paused, by the new config's pause step
        assert h.sample("autoscaler_pool_paused", {"pool": "chat"}) == 1
        assert h.sample("autoscaler_budget_monthly_usd", {"scope": "pool:chat"}) == 500
        assert await store.resume("chat")
        h.clock.advance(1.0)
        await h.ticks(1)
        assert len(cloud.live(main)) == 4  # the kept actuator asked the new gate
        assert h.sample("autoscaler_pool_paused", {"pool": "chat"}) == 0
    finally:
        await store.close()
        await h.reloader.close(1.0)
        await h.daemon.close(1.0)


async def test_a_new_interval_sets_the_standbys_lease_retry_period(
    registries: dict[str, Registry[Any]], tmp_path: Path, redis_url: str
) -> None:
    """A standby retries the lease every tick interval (capped at ttl / 3): a reload that
    changes ``controller.interval`` must move that period too, or a standby keeps the old one
    (a longer failover after a faster interval)."""
    path = tmp_path / "autoscaler.yaml"
    reset_queue("r-lease")
    write(path, {"name": "chat", "queue": "r-lease"}, interval="2s")
    h = Harness(registries, path)
    leader = LeaderGate(RedisLease(redis_url, "test:reload-lease", 30.0), h.clock, retry_s=2.0)
    h.reloader.leader = leader
    try:
        assert leader.retry_s == 2.0
        write(path, {"name": "chat", "queue": "r-lease"}, interval="500ms")
        assert (await h.reloader.reload()).ok
        assert h.daemon.loop.interval_s == 0.5
        assert leader.retry_s == 0.5
        write(path, {"name": "chat", "queue": "r-lease"}, interval="1m")
        assert (await h.reloader.reload()).ok
        assert leader.retry_s == 10.0  # capped at ttl / 3
    finally:
        await leader.lease.close()
        await h.daemon.close(1.0)
