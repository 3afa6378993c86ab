"""What a restarted daemon resumes besides its controllers: capacity holds and counter baselines.

A real redis-server holds the queue (a ``redis-list`` pool with its counters) and, by default,
the pool's state record; the groups are the ``fake`` provider's, a spot group that refuses
with ``CapacityUnavailable`` (a stockout) and an on-demand one. Daemons run in-process on a
``ManualClock``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel
from structlog.testing import capture_logs

from autoscaler.config.models import Config, load_config, parse_config
from autoscaler.config.to_core import STATE_FORMAT, pool_spec, state_fingerprint
from autoscaler.core.availability import Hold, Holds
from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import Clock, ManualClock
from autoscaler.ports.errors import ProviderError
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.carryover import BASELINE_MAX_AGE_S, fresh_baselines, resume_holds
from autoscaler.runtime.reload import ConfigReloader
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeAccountSettings, FakeGroupSettings, FakeProvider

CONFIG = """
controller:
  interval: 5s
{store}
providers: {{cloud: {{kind: fake}}}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: '{url}', key: 'q:carry'}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: cloud, market: spot, hourly_price: 1.0{refuse}}}
      - {{name: od, provider: cloud, hourly_price: 3.0}}
"""

SPOT = GroupId("chat", "spot")


def config(registries: dict[str, Registry[Any]], url: str, *, refuse: bool,
           store: str = "") -> Config:
    registries["providers"].register("fake", FakeProvider)
    text = CONFIG.format(url=url, store=store,
                         refuse=", refuse: capacity_unavailable" if refuse else "")
    return parse_config(text, "carry.yaml", registries=registries)


async def fill(url: str, clock: ManualClock, depth: int, enqueued: int, completed: int) -> None:
    client = aioredis.Redis.from_url(url)
    await client.delete("q:carry")
    now = clock.wall()
    if depth:
        await client.lpush("q:carry", *[json.dumps({"enqueued_at": now}) for _ in range(depth)])
    await client.set("q:carry:enqueued", enqueued)
    await client.set("q:carry:completed", completed)
    await client.aclose()


def spot_resizes() -> list[int | None]:
    return [c.target for c in FakeProvider.clients["cloud"].calls
            if c.operation == "resize" and c.groups[0] == SPOT]


async def test_a_restart_keeps_the_stockout_hold_and_has_rates_at_once(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """Daemon 1 finds the spot group stocked out at t=1000 (held 60 s, to t=1060) and measures
    the counters at t=1000 and t=1005. Daemon 2 starts at t=1020, with the stockout still on
    (its config no longer injects it: the proof is that spot is not asked at all): it resumes
    the hold and puts the demand on on-demand at once, and its first tick has rates, measured
    from daemon 1's last readings. Daemon 3, without a state store, asks spot again at once
    and has no rates on its first tick: the failure this prevents."""
    clock = ManualClock(start=1000.0)
    await fill(redis_url, clock, 4, 100, 96)
    daemon1 = Daemon.build(config(registries, redis_url, refuse=True),
                           registries=registries, clock=clock)
    await daemon1.start()
    [tick] = await daemon1.loop.tick()
    assert tick.submitted == ("spot",)
    await daemon1.loop.settle()  # refused: held, the shortfall moved to od
    assert daemon1.loop.unavailability.reason(SPOT, clock.monotonic()) is not None
    clock.advance(5.0)
    [tick] = await daemon1.loop.tick()
    assert tick.observation is not None and tick.observation.arrival_rate == 0.0
    await daemon1.close(1.0)

    clock.set(1020.0)
    await fill(redis_url, clock, 4, 115, 106)  # 15 arrivals, 10 completions in the 15 s since
    with capture_logs() as logs:
        daemon2 = Daemon.build(config(registries, redis_url, refuse=False),
                               registries=registries, clock=clock)
        await daemon2.start()
        [tick] = await daemon2.loop.tick()
        await daemon2.loop.settle()
    [resumed] = [e for e in logs if e["event"] == "hold_resumed"]
    assert resumed["group"] == "spot" and resumed["remaining_s"] == pytest.approx(40.0)
    assert "insufficient capacity" in resumed["reason"] or "refused" in resumed["reason"]
    assert tick.observation is not None
    assert tick.observation.arrival_rate == pytest.approx(1.0)
    assert tick.observation.completion_rate == pytest.approx(10 / 15)
    assert spot_resizes() == []  # the stockout is not probed before its hold ends
    od = FakeProvider.clients["cloud"].groups[GroupId("chat", "od")]
    assert od.desired == 4
    await daemon2.close(1.0)

    daemon3 = Daemon.build(config(registries, redis_url, refuse=False, store="  state_store: none"),
                           registries=registries, clock=clock)
    await daemon3.start()
    [tick] = await daemon3.loop.tick()
    assert tick.observation is not None and tick.observation.arrival_rate is None
    await daemon3.loop.settle()
    assert spot_resizes() == [4]
    await daemon3.close(1.0)


async def test_a_policy_change_drops_the_state_but_keeps_the_holds(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    clock = ManualClock(start=2000.0)
    await fill(redis_url, clock, 4, 10, 6)
    daemon1 = Daemon.build(config(registries, redis_url, refuse=True),
                           registries=registries, clock=clock)
    await daemon1.start()
    await daemon1.loop.tick()
    await daemon1.loop.settle()
    clock.advance(5.0)
    await daemon1.loop.tick()
    await daemon1.close(1.0)

    text = CONFIG.format(url=redis_url, store="", refuse="").replace(
        "{kind: threshold}", "{kind: threshold, target: 2.0}")
    changed = parse_config(text, "carry.yaml", registries=registries)
    clock.advance(5.0)
    with capture_logs() as logs:
        daemon2 = Daemon.build(changed, registries=registries, clock=clock)
        await daemon2.loop.tick()
    events = [e["event"] for e in logs]
    assert "state_discarded" in events and "state_resumed" not in events
    assert "hold_resumed" in events
    assert daemon2.loop.unavailability.reason(SPOT, clock.monotonic()) is not None
    await daemon2.close(1.0)


def test_the_fingerprint_ignores_prices_bounds_and_settings_not_the_policy(
    registries: dict[str, Registry[Any]],
) -> None:
    registries["providers"].register("fake", FakeProvider)
    url = "redis://127.0.0.1:1/0"

    def fingerprint(**edits: str) -> str:
        text = CONFIG.format(url=url, store="", refuse="")
        for old, new in edits.items():
            old = old.replace("__", " ")
            assert old in text, old
            text = text.replace(old, new)
        pool = parse_config(text, registries=registries).pools[0]
        return state_fingerprint(pool_spec(pool, 5.0), pool.policy.kind, pool.policy.params)

    base = fingerprint()
    same = [
        fingerprint(**{"hourly_price: 3.0": "hourly_price: 2.5"}),
        fingerprint(**{"max: 20": "max: 40"}),
        fingerprint(**{"rules: []": "rules: [{type: pods, value: 2, period: 10s}]"}),
        fingerprint(**{"q:carry": "q:other"}),
        fingerprint(**{"hourly_price: 1.0": "hourly_price: 1.0, refuse: transient"}),
        fingerprint(**{"interval: 5s": "interval: 10s"}),
    ]
    assert same == [base] * len(same)
    different = {
        fingerprint(**{"{kind: threshold}": "{kind: threshold, target: 2.0}"}),
        fingerprint(**{"{kind: threshold}": "{kind: target-tracking}"}),
        fingerprint(**{"max_wait: 2s": "max_wait: 3s"}),
        fingerprint(**{"name: spot": "name: spot2"}),
        fingerprint(**{"market: spot, ": ""}),
    }
    assert base not in different and len(different) == 5


def test_saved_holds_and_baselines_expire() -> None:
    holds: Holds[GroupId] = Holds(60.0, 900.0)
    saved = {"spot": Hold(1060.0, "stockout", 60.0), "gone": Hold(1060.0, "stockout", 60.0),
             "old": Hold(100.0, "stockout", 60.0)}
    adopted = resume_holds(holds, "chat", ["spot", "old"], saved, now=1100.0)
    # ended 40 s ago: not held, but its backoff doubles on the next failure; a removed group
    # and a hold that ended more than cap_s ago are dropped
    assert [name for name, _ in adopted] == ["spot"]
    assert holds.reason(SPOT, 1100.0) is None and holds.mark(SPOT, 1100.0, "again") == 120.0

    reading = (1000.0, 5)
    assert fresh_baselines((reading, None), 1000.0 + BASELINE_MAX_AGE_S) == (reading, None)
    assert fresh_baselines((reading, reading), 1001.0 + BASELINE_MAX_AGE_S) is None
    assert fresh_baselines((reading, None), 999.0) is None  # from the future: another clock


async def test_a_reload_keeps_the_rates_of_unchanged_queues(
    registries: dict[str, Registry[Any]], redis_url: str, tmp_path: Path
) -> None:
    """A reload rebuilds the samplers; an edited price keeps the queue's counter baselines, so
    the first tick after it has rates; an edited queue block starts them afresh."""
    registries["providers"].register("fake", FakeProvider)
    clock = ManualClock(start=3000.0)
    await fill(redis_url, clock, 0, 50, 50)
    path = tmp_path / "carry.yaml"
    text = CONFIG.format(url=redis_url, store="  state_store: none", refuse="")
    path.write_text(text)

    def build(cfg: Any) -> Daemon:
        return Daemon.build(cfg, registries=registries, clock=clock)

    daemon = build(load_config(path, registries))
    reloader = ConfigReloader(daemon, path, build, registries=registries)
    await daemon.loop.tick()
    clock.advance(5.0)
    await fill(redis_url, clock, 0, 60, 55)
    path.write_text(text.replace("hourly_price: 3.0", "hourly_price: 2.0"))
    assert (await reloader.reload("signal")).ok
    [tick] = await daemon.loop.tick()
    assert tick.observation is not None and tick.observation.arrival_rate == pytest.approx(2.0)
    assert tick.observation.completion_rate == pytest.approx(1.0)

    clock.advance(5.0)
    client = aioredis.Redis.from_url(redis_url)
    await client.mset({"q:other:enqueued": 1000, "q:other:completed": 900})
    await client.aclose()
    path.write_text(text.replace("key: 'q:carry'", "key: 'q:other'"))
    assert (await reloader.reload("signal")).ok
    [tick] = await daemon.loop.tick()
    assert tick.observation is not None and tick.observation.arrival_rate is None
    await daemon.close(1.0)
    await reloader.close(1.0)


async def test_a_restart_on_another_queue_does_not_resume_its_baselines(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    clock = ManualClock(start=4000.0)
    await fill(redis_url, clock, 0, 10, 10)
    daemon1 = Daemon.build(config(registries, redis_url, refuse=False),
                           registries=registries, clock=clock)
    await daemon1.loop.tick()
    await daemon1.close(1.0)
    client = aioredis.Redis.from_url(redis_url)
    await client.mset({"q:moved:enqueued": 500, "q:moved:completed": 400})
    await client.aclose()
    clock.advance(5.0)
    moved = parse_config(CONFIG.format(url=redis_url, store="", refuse="").replace(
        "key: 'q:carry'", "key: 'q:moved'"), registries=registries)
    with capture_logs() as logs:
        daemon2 = Daemon.build(moved, registries=registries, clock=clock)
        [tick] = await daemon2.loop.tick()
    assert "state_resumed" in [e["event"] for e in logs]  # the policy state is the pool's
    assert tick.observation is not None and tick.observation.arrival_rate is None
    await daemon2.close(1.0)


class StuckClient:
    """An account whose groups' states outlive the daemon: ``spot`` has 4 instances that
    never finish booting (a zone that accepted the size and cannot bring VMs up)."""

    states: ClassVar[dict[str, GroupState]] = {}

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        self.groups = groups

    async def start(self) -> None:
        return None

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        return {g: self.states[g.group] for g in groups}

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        return None

    async def close(self, drain_timeout_s: float) -> None:
        return None


class StuckCloud:
    kind: ClassVar[str] = "stuck"
    AccountSettings: ClassVar[type[BaseModel]] = FakeAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = FakeGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> StuckClient:
        return StuckClient(account, groups, clock)


STUCK = """
controller: {{interval: 5s, state_store: {{url: '{url}', prefix: 'stuck:'}}}}
pools:
  - name: chat
    queue: {{kind: memory, name: stuck}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20, boot_time: 60s, boot_timeout: 120s}}
    policy: {{kind: fixed, instances: 4}}
    groups:
      - {{name: spot, provider: stuck, market: spot}}
      - {{name: od, provider: stuck}}
"""


@pytest.mark.parametrize(("down_s", "fires"), [(50.0, True), (130.0, False)])
async def test_a_restart_keeps_timing_a_stuck_boot(
    registries: dict[str, Registry[Any]], redis_url: str, down_s: float, fires: bool,
) -> None:
    """Spot's 4 instances boot from t=1000 and never come up; the boot timeout is 120 s.
    Daemon 1 watches them until t=1050. After a 50 s restart daemon 2 resumes the timing and
    holds spot at t=1125, as one daemon would have; it does not wait until t=1225. After a
    restart longer than the timeout (the record is older than one timeout) the watch starts
    afresh, as without a store."""
    registries["providers"].register("stuck", StuckCloud)
    StuckClient.states = {
        "spot": GroupState("spot", Market.SPOT, desired=4, booting=4, running=0),
        "od": GroupState("od", Market.ON_DEMAND, desired=0, booting=0, running=0),
    }
    reset_queue("stuck")
    cfg = parse_config(STUCK.format(url=redis_url), registries=registries)
    clock = ManualClock(start=1000.0)
    daemon1 = Daemon.build(cfg, registries=registries, clock=clock)
    await daemon1.loop.tick()
    clock.set(1050.0)
    await daemon1.loop.tick()
    await daemon1.close(1.0)

    clock.set(1050.0 + down_s)
    daemon2 = Daemon.build(cfg, registries=registries, clock=clock)
    await daemon2.loop.tick()
    clock.set(1125.0 if fires else 1050.0 + down_s + 75.0)
    with capture_logs() as logs:
        [tick] = await daemon2.loop.tick()
    timed_out = [e for e in logs if e["event"] == "group_unavailable"]
    if fires:
        [event] = timed_out
        assert event["group"] == "chat/spot" and event["error_class"] == "boot_timeout"
        assert tick.fleet is not None and not tick.fleet.group("spot").available
    else:
        assert timed_out == []
    await daemon2.close(1.0)


def test_explain_sees_the_live_daemons_holds(tmp_path: Path, redis_url: str) -> None:
    """``explain`` reads the acting daemon's record: a group it holds unavailable is shown
    held, and its share on the next group, as the daemon would decide."""
    import redis as sync_redis

    from tests.test_explain import explain, write

    client = sync_redis.Redis.from_url(redis_url)
    now = time.time()
    client.lpush("explain-q", *[json.dumps({"id": i, "enqueued_at": now - 5}) for i in range(50)])
    hold = {"$type": "autoscaler.core.availability.Hold",
            "fields": {"until": now + 600.0, "reason": "insufficient capacity", "hold_s": 600.0}}
    client.set("ex:chat", json.dumps({
        "format": STATE_FORMAT, "fingerprint": "another config", "saved_wall": now,
        "state": None, "holds": {"$dict": {"spot": hold}}, "watch": {"$dict": {}},
        "queue": "", "baselines": None}))
    result = explain(write(tmp_path, redis_url), "--pool", "chat", "--json")
    assert result.returncode == 0, result.stderr
    [pool] = json.loads(result.stdout)["pools"]
    spot, od = pool["allocation"]
    assert not spot["available"] and (spot["target"], od["target"]) == (0, 4)
    client.close()
