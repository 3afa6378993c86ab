"""The daemon's decisions across unapplied resizes and restarts.

In-process daemons on a ManualClock with a memory queue. Unapplied decisions use the ``local``
provider (dry run) and the ``fake`` provider refusing every resize. Restarts use a real
redis-server as the state store and a provider plugin standing in for a cloud group, whose size
outlives the daemon (``local`` instances die with it, so they cannot show a resumed window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.core.model import GroupState, Market
from autoscaler.policies.sla_estimators import SlaState
from autoscaler.ports.clock import Clock, ManualClock
from autoscaler.ports.errors import ProviderError
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue
from autoscaler.testing.fakes import FakeAccountSettings, FakeGroupSettings, FakeProvider

FLAP = """
controller: {{interval: 1s, drain_timeout: 1s}}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 60, boot_time: 60s}}
    groups:
      - {{name: g, provider: {provider}}}
"""


async def test_dry_run_ticks_do_not_flap(registries: dict[str, Registry[Any]]) -> None:
    """50 waiting, nothing running: every dry-run tick asks for 4 (the scale-up rules from 0),
    instead of 4, then 0 for the rest of the 15 s period, then 4 again."""
    clock = ManualClock()
    queue = reset_queue("st-dry")
    for _ in range(50):
        queue.put(clock.wall(), 1.0)
    config = parse_config(FLAP.format(queue="st-dry", provider="local"), registries=registries)
    daemon = Daemon.build(config, registries=registries, clock=clock, dry_run=True)
    desired = []
    for _ in range(6):
        [tick] = await daemon.loop.tick()
        assert tick.decision is not None and tick.changed and not tick.acted
        desired.append(tick.decision.desired)
        clock.advance(1.0)
    assert desired == [4] * 6
    assert daemon.loop.actuators == {}  # the gate let nothing through
    assert daemon.loop.pools[0].state.guards.up_events == ()
    await daemon.close(1.0)


async def test_a_refused_resize_does_not_flap(registries: dict[str, Registry[Any]]) -> None:
    """Every resize is refused (a quota): each tick still asks for 4, no scale event is
    counted, and the group's actuator keeps the latest target and retries it on its backoff."""
    registries["providers"].register("fake", FakeProvider)
    clock = ManualClock()
    queue = reset_queue("st-refused")
    for _ in range(50):
        queue.put(clock.wall(), 1.0)
    config = parse_config(FLAP.format(queue="st-refused", provider="fake, refuse: transient"),
                          registries=registries)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, clock=clock, telemetry=telemetry)
    await daemon.start()
    for _ in range(4):
        [tick] = await daemon.loop.tick()
        assert tick.decision is not None and tick.decision.desired == 4
        await daemon.loop.settle(first_outcome=True)
        clock.advance(1.0)
    assert daemon.loop.pools[0].state.guards.up_events == ()
    resizes = [c.target for c in FakeProvider.clients["fake"].calls if c.operation == "resize"]
    assert resizes and set(resizes) == {4}
    assert telemetry.registry.get_sample_value(
        "autoscaler_provider_errors_total",
        {"pool": "chat", "group": "g", "operation": "resize", "error": "transient"},
    ) == len(resizes)
    await daemon.close(1.0)


# --------------------------------------------------------------------------- restarts

RESTART = """
controller:
  interval: 5s
  state_store: {store}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: {max}, slots_per_instance: 1, boot_time: 60s}}
    policy: {policy}
    behavior: {{scale_up: {{rules: []}}}}
    groups:
      - {{name: g, provider: cloud}}
"""


class CloudClient:
    """An account whose group sizes live outside the daemon, as Auto Scaling groups' do."""

    sizes: ClassVar[dict[str, int]] = {}

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        self.groups = groups

    async def start(self) -> None:
        return None

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        return {
            g: GroupState(g.group, Market.ON_DEMAND, self.sizes.get(g.group, 0), 0,
                          self.sizes.get(g.group, 0))
            for g in groups
        }

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        self.sizes[group.group] = target

    async def close(self, drain_timeout_s: float) -> None:
        return None


class CloudGroup:
    """The ``cloud`` provider kind: no account settings, so groups name it directly."""

    kind: ClassVar[str] = "cloud"
    AccountSettings: ClassVar[type[BaseModel]] = FakeAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = FakeGroupSettings
    sizes = CloudClient.sizes

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> CloudClient:
        return CloudClient(account, groups, clock)


def restart_config(
    registries: dict[str, Registry[Any]], queue: str, store: str, *,
    policy: str = "{kind: threshold}", max_: int = 50,
) -> Config:
    registries["providers"].register("cloud", CloudGroup)
    text = RESTART.format(queue=queue, store=store, policy=policy, max=max_)
    return parse_config(text, "restart.yaml", registries=registries)


async def one_tick(config: Config, registries: dict[str, Registry[Any]], clock: ManualClock,
                   telemetry: PrometheusTelemetry | None = None) -> tuple[Daemon, Any]:
    daemon = Daemon.build(config, registries=registries, clock=clock, telemetry=telemetry)
    [tick] = await daemon.loop.tick()
    return daemon, tick


async def test_a_restart_resumes_the_scale_down_window(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """Daemon 1 starts at t=1000 with 20 running and a queue that needs 20: its scale-down
    window holds 20 until t=1300. Daemon 2 starts at t=1301 on the same config: its first
    reading has no rates (a new sampler), which never scales in; on its second tick, with the
    saved window, it scales in. Without a state store a new window would hold 20 until t=1601."""
    CloudGroup.sizes["g"] = 20
    clock = ManualClock(start=1000.0)
    queue = reset_queue("st-window")
    for _ in range(20):
        queue.put(clock.wall(), 1.0)
    store = f"{{url: '{redis_url}', prefix: 'test:state:'}}"
    config = restart_config(registries, "st-window", store)
    daemon1, tick = await one_tick(config, registries, clock)
    assert tick.decision.desired == 20
    while (item := queue.take_nowait(clock.wall())) is not None:  # served: the policy now
        queue.complete(item)  # wants the minimum
    clock.set(1100.0)
    [tick] = await daemon1.loop.tick()
    assert tick.decision.desired == 20 and "stabilized to 20" in tick.decision.reason
    await daemon1.close(1.0)

    clock.set(1301.0)
    with capture_logs() as logs:
        daemon2, tick = await one_tick(config, registries, clock)
    assert [e["pool"] for e in logs if e["event"] == "state_resumed"] == ["chat"]
    assert daemon2.loop.pools[0].state.guards.started == 1000.0  # daemon 1's first tick
    assert tick.decision.desired == 20 and "no rates measured" in tick.decision.reason
    clock.set(1306.0)
    [tick] = await daemon2.loop.tick()
    assert tick.decision.desired == 1 and tick.acted  # daemon 1's window ended at t=1300
    await daemon2.loop.settle()
    assert CloudGroup.sizes["g"] == 1
    await daemon2.close(1.0)

    CloudGroup.sizes["g"] = 20
    fresh_config = restart_config(registries, "st-window", "none")
    fresh, tick = await one_tick(fresh_config, registries, clock)
    assert tick.decision.desired == 20  # a fresh controller: its own full window first
    await fresh.close(1.0)


async def test_a_restart_resumes_the_sla_estimators(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    CloudGroup.sizes["g"] = 4
    clock = ManualClock(start=50.0)
    queue = reset_queue("st-sla")
    config = restart_config(registries, "st-sla", f"{{url: '{redis_url}'}}",
                            policy="{kind: sla, service_time: 1.0}")
    daemon1 = Daemon.build(config, registries=registries, clock=clock)
    for _ in range(3):
        for _ in range(10):
            queue.put(clock.wall(), 1.0)
        await daemon1.loop.tick()
        clock.advance(5.0)
    saved = daemon1.loop.pools[0].state.policy
    assert isinstance(saved, SlaState) and saved.rate is not None and saved.started == 50.0
    await daemon1.close(1.0)

    daemon2 = Daemon.build(config, registries=registries, clock=clock)
    [tick] = await daemon2.loop.tick()
    resumed = daemon2.loop.pools[0].state.policy
    assert isinstance(resumed, SlaState) and tick.decision is not None
    assert resumed.started == 50.0 and resumed.rate == pytest.approx(saved.rate)
    assert resumed.time == clock.monotonic()  # and it moved on from there
    await daemon2.close(1.0)


async def test_state_from_another_config_or_corrupt_is_discarded(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    import redis.asyncio as aioredis

    CloudGroup.sizes["g"] = 3
    clock = ManualClock(start=10.0)
    reset_queue("st-discard")
    store = f"{{url: '{redis_url}'}}"
    daemon1, _ = await one_tick(restart_config(registries, "st-discard", store), registries,
                                clock)
    await daemon1.close(1.0)
    # A bound is no reason to forget: the saved windows still describe this fleet.
    bounds = restart_config(registries, "st-discard", store, max_=40)
    with capture_logs() as logs:
        daemon2, tick = await one_tick(bounds, registries, clock)
    assert [e["event"] for e in logs if e["event"].startswith("state_")][:2] == [
        "state_store_configured", "state_resumed"]
    assert daemon2.loop.pools[0].state.guards.started == 10.0 and tick.decision is not None
    await daemon2.close(1.0)
    # A policy parameter is: the estimators were fitted under another one.
    changed = restart_config(registries, "st-discard", store, max_=40,
                             policy="{kind: threshold, target: 2.0}")
    with capture_logs() as logs:
        daemon2, tick = await one_tick(changed, registries, clock)
    [event] = [e for e in logs if e["event"] == "state_discarded"]
    assert "another config" in event["reason"]
    assert not any(e["event"] == "state_resumed" for e in logs)
    assert tick.decision is not None
    await daemon2.close(1.0)

    client = aioredis.Redis.from_url(redis_url)
    await client.set("autoscaler:state:chat", b"\x80\x04\x95 not json, a pickle perhaps")
    with capture_logs() as logs:
        daemon3, tick = await one_tick(changed, registries, clock)
    [event] = [e for e in logs if e["event"] == "state_discarded"]
    assert "not JSON" in event["reason"] and tick.decision is not None
    await daemon3.close(1.0)
    assert (await client.ttl("autoscaler:state:chat")) > 86000  # rewritten, with the TTL
    await client.aclose()


async def test_a_failed_save_is_logged_and_counted_and_the_tick_goes_on(
    registries: dict[str, Registry[Any]],
) -> None:
    from autoscaler import testing

    CloudGroup.sizes["g"] = 2
    clock = ManualClock()
    reset_queue("st-down")
    url = f"redis://:hunter2@127.0.0.1:{testing.free_port()}/0"  # nothing listens there
    config = restart_config(registries, "st-down", f"{{url: '{url}', timeout: 200ms}}")
    telemetry = PrometheusTelemetry()
    with capture_logs() as logs:
        daemon, tick = await one_tick(config, registries, clock, telemetry)
    assert tick.decision is not None
    events = [e["event"] for e in logs]
    assert "state_load_failed" in events and "state_save_failed" in events
    assert "hunter2" not in repr(logs)
    assert telemetry.registry.get_sample_value("autoscaler_state_save_failures_total") == 1
    await daemon.close(1.0)


def test_state_store_config_is_checked_with_file_and_line(
    registries: dict[str, Registry[Any]],
) -> None:
    from autoscaler.config.yaml_lines import ConfigFileError

    with pytest.raises(ConfigFileError, match=r"restart.yaml:4: controller.state_store.url"):
        restart_config(registries, "q", "{url: 'http://example.com'}")
    with pytest.raises(ConfigFileError, match=r"restart.yaml:4: controller.state_store.ttl"):
        restart_config(registries, "q", "{ttl: 0s}")


REDIS_QUEUE = """
controller:
  interval: 5s
{store}
pools:
  - name: chat
    queue: {{kind: redis-list, url: '{url}', key: 'q:chat'}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 10}}
    groups:
      - {{name: g, provider: cloud}}
"""


@pytest.mark.parametrize(
    ("store", "saved"),
    [("", True), ("  state_store: {prefix: 'mine:'}", True), ("  state_store: none", False)],
)
async def test_by_default_a_redis_queue_pool_persists_to_its_queue_server(
    registries: dict[str, Registry[Any]], redis_url: str, store: str, saved: bool
) -> None:
    import redis.asyncio as aioredis

    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    config = parse_config(REDIS_QUEUE.format(store=store, url=redis_url), "q.yaml",
                          registries=registries)
    daemon, tick = await one_tick(config, registries, ManualClock())
    assert tick.decision is not None
    await daemon.close(1.0)
    client = aioredis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in await client.keys("*state*") + await client.keys("mine:*"))
    await client.aclose()
    prefix = "mine:" if "mine" in store else "autoscaler:state:"
    assert keys == ([f"{prefix}chat"] if saved else [])


async def test_once_and_dry_run_read_state_but_never_write_it(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """A look at a live pool must not overwrite the state of the daemon acting on it."""
    import io

    import redis.asyncio as aioredis

    from autoscaler.runtime.app import run_daemon

    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    config = parse_config(REDIS_QUEUE.format(store="", url=redis_url), "q.yaml",
                          registries=registries)
    out = io.StringIO()
    assert await run_daemon(config, registries=registries, once=True, out=out) == 0
    assert out.getvalue().count("\n") == 1
    dry = Daemon.build(config, registries=registries, clock=ManualClock(), dry_run=True)
    await dry.loop.tick()
    await dry.close(1.0)
    client = aioredis.Redis.from_url(redis_url)
    assert await client.keys("autoscaler:state:*") == []
    await client.aclose()


class StandbyGate:
    """A replica that does not hold the lease: decides, never acts."""

    def is_open(self) -> bool:
        return False

    @property
    def why_closed(self) -> str:
        return "standby"


async def test_a_standby_behind_a_closed_gate_never_writes_state(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """Replicas share one state store: only the actor may write, or a standby's state (decided
    but never carried out) would overwrite the actor's after every tick."""
    import redis.asyncio as aioredis

    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    config = parse_config(REDIS_QUEUE.format(store="", url=redis_url), "q.yaml",
                          registries=registries)
    standby = Daemon.build(config, registries=registries, clock=ManualClock(),
                           gate=StandbyGate())
    [tick] = await standby.loop.tick()
    assert tick.decision is not None
    await standby.close(1.0)
    client = aioredis.Redis.from_url(redis_url)
    assert await client.keys("autoscaler:state:*") == []
    actor = Daemon.build(config, registries=registries, clock=ManualClock())
    await actor.loop.tick()
    await actor.close(1.0)
    assert await client.keys("autoscaler:state:*") == [b"autoscaler:state:chat"]
    await client.aclose()
