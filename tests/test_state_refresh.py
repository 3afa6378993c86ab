"""State saves skip a pool whose guards' state is unchanged, within ``REFRESH_S``; a change,
the refresh period, a failed save and a clean stop write it (``runtime.persistence``).

In-process daemons on a ManualClock with a memory queue and a real redis-server as the store;
a record's ``saved_wall`` tells when it was last written."""

from __future__ import annotations

import json
from typing import Any

import redis

from autoscaler import testing
from autoscaler.core.pipeline import ControllerState
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.persistence import REFRESH_S, _steady_key, policy_steady_key
from autoscaler.sources.memory import reset_queue
from tests.test_daemon_state import CloudGroup, restart_config

PREFIX = "test:refresh:"


def saved_wall(url: str) -> float:
    text = redis.Redis.from_url(url).get(PREFIX + "chat")
    assert text is not None
    return float(json.loads(text)["saved_wall"])


async def test_an_unchanged_pool_is_written_on_change_refresh_and_clean_stop(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).delete(PREFIX + "chat")
    CloudGroup.sizes["g"] = 3
    clock = ManualClock(start=1000.0)
    reset_queue("rf-chat")
    config = restart_config(registries, "rf-chat",
                            f"{{url: '{redis_url}', prefix: '{PREFIX}'}}")
    daemon = Daemon.build(config, registries=registries, clock=clock)
    persistence = daemon.loop.persistence
    assert persistence is not None
    await daemon.loop.tick()
    assert saved_wall(redis_url) == clock.wall()  # the first save writes every pool
    clock.advance(5.0)
    await daemon.loop.tick()
    first = clock.wall()
    assert saved_wall(redis_url) == first  # rates measured for the first time: written

    clock.advance(5.0)
    await daemon.loop.tick()  # the same fleet and window values: not written again
    assert saved_wall(redis_url) == first and persistence.skipped == 1

    CloudGroup.sizes["g"] = 4  # the fleet's desired size is in the guards' state
    clock.advance(5.0)
    await daemon.loop.tick()
    assert saved_wall(redis_url) == clock.wall()
    await daemon.loop.settle()  # it is held at 3 by its window: a scale-in is a change too
    for _ in range(4):  # until the scale events leave the rules' window (a change too)
        clock.advance(5.0)
        await daemon.loop.tick()
    steady, skipped = saved_wall(redis_url), persistence.skipped
    clock.advance(5.0)
    await daemon.loop.tick()
    assert saved_wall(redis_url) == steady and persistence.skipped == skipped + 1

    clock.advance(REFRESH_S)
    await daemon.loop.tick()  # due: written though unchanged
    assert saved_wall(redis_url) == clock.wall()

    clock.advance(5.0)
    await daemon.loop.tick()
    assert saved_wall(redis_url) < clock.wall()
    await daemon.close(1.0)  # a clean stop writes what the last ticks skipped
    assert saved_wall(redis_url) == clock.wall()
    state = json.loads(redis.Redis.from_url(redis_url).get(PREFIX + "chat") or "")["state"]
    assert state == persistence._bindings["chat"].codec.encode(daemon.loop.pools[0].state)


async def test_a_failed_save_is_not_taken_for_written(
    registries: dict[str, Registry[Any]],
) -> None:
    CloudGroup.sizes["g"] = 2
    clock = ManualClock()
    reset_queue("rf-down")
    url = f"redis://127.0.0.1:{testing.free_port()}/0"  # nothing listens there
    config = restart_config(registries, "rf-down", f"{{url: '{url}', timeout: 200ms}}")
    daemon = Daemon.build(config, registries=registries, clock=clock)
    persistence = daemon.loop.persistence
    assert persistence is not None
    await daemon.loop.tick()
    clock.advance(5.0)
    await daemon.loop.tick()  # unchanged, but the last save failed: tried again
    assert persistence.save_failures == 2 and persistence.skipped == 0
    await daemon.close(1.0)


async def test_records_are_refreshed_well_before_they_expire(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    reset_queue("rf-ttl")
    for ttl, refresh in (("24h", REFRESH_S), ("20s", 10.0)):
        config = restart_config(registries, "rf-ttl", f"{{url: '{redis_url}', ttl: {ttl}}}")
        daemon = Daemon.build(config, registries=registries, clock=ManualClock())
        assert daemon.loop.persistence is not None
        assert daemon.loop.persistence.refresh_s == refresh
        await daemon.close(1.0)


async def test_unchanged_pools_are_refreshed_within_the_period_spread_over_ticks(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """24 idle pools ticking every 5 s for 2 min: each record is rewritten at least every
    ``REFRESH_S``, and the refreshes are spread (no tick after the first rewrites them all)."""
    prefix = "test:spread:"
    client = redis.Redis.from_url(redis_url)
    names = [f"p{i}" for i in range(24)]
    client.delete(*(prefix + n for n in names))
    registries["providers"].register("cloud", CloudGroup)
    CloudGroup.sizes["g"] = 1
    text = (f"controller: {{interval: 5s, state_store: {{url: '{redis_url}', "
            f"prefix: '{prefix}'}}}}\npools:\n")
    for name in names:
        reset_queue(f"sp-{name}")
        text += (f"  - {{name: {name}, queue: {{kind: memory, name: sp-{name}}}, "
                 f"sla: {{max_wait: 2s}}, capacity: {{min: 1, max: 5, boot_time: 60s}}, "
                 f"groups: [{{name: g, provider: cloud}}]}}\n")
    from autoscaler.config.models import parse_config

    clock = ManualClock(start=1000.0)
    daemon = Daemon.build(parse_config(text, "spread.yaml", registries=registries),
                          registries=registries, clock=clock)
    last = dict.fromkeys(names, clock.wall())
    written_per_tick = []
    for _ in range(25):
        await daemon.loop.tick()
        walls = [float(json.loads(client.get(prefix + n) or "")["saved_wall"]) for n in names]
        written = [n for n, w in zip(names, walls, strict=True) if w == clock.wall()]
        for name in written:
            assert clock.wall() - last[name] <= REFRESH_S
            last[name] = clock.wall()
        written_per_tick.append(len(written))
        clock.advance(5.0)
    assert all(clock.wall() - 5.0 - w <= REFRESH_S for w in last.values())
    assert written_per_tick[0] == len(names)
    assert max(written_per_tick[3:]) < len(names) / 2 and sum(written_per_tick[3:]) > 0
    await daemon.close(1.0)



async def test_a_policy_names_the_state_saves_must_not_skip(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """The sla burst latch is part of the comparison; its estimators (moving every tick) are
    not; a policy without ``steady_key`` (threshold) adds nothing."""
    store = f"{{url: '{redis_url}', prefix: '{PREFIX}'}}"
    reset_queue("rf-latch")
    keys = {}
    for kind in ("sla", "threshold"):
        config = restart_config(registries, "rf-latch", store, policy=f"{{kind: {kind}}}")
        daemon = Daemon.build(config, registries=registries, clock=ManualClock(start=1000.0))
        await daemon.loop.tick()
        keys[kind] = daemon.loop.pools[0]
        await daemon.close(1.0)

    def key(rt: Any, policy_state: Any) -> tuple[Any, ...]:
        state = ControllerState(policy_state, rt.state.guards)
        return _steady_key(state, {}, {}, policy_steady_key(rt.controller, state))

    sla = keys["sla"]
    calm = sla.state.policy._replace(rate=10.0, load=5.0)
    assert key(sla, calm) == key(sla, calm._replace(rate=12.0, load=6.5))  # skipped
    assert key(sla, calm) != key(sla, calm._replace(burst_until=1060.0, burst_floor=9))
    threshold = keys["threshold"]
    assert policy_steady_key(threshold.controller, threshold.state) is None
