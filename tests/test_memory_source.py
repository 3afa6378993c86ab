"""The in-process ``memory`` queue and its sampler, on a ManualClock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from autoscaler.config.models import parse_config
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.sources.memory import MemorySettings, MemorySource, get_queue, reset_queue


async def test_sampler_measures_depth_wait_in_flight_and_rates() -> None:
    clock = ManualClock()
    queue = reset_queue("t-sampler")
    sampler = MemorySource.make_sampler([("p", MemorySettings(name="t-sampler"))], clock, 0.5)
    first = (await sampler.sample())["p"]
    assert (first.depth, first.oldest_wait_s, first.in_flight) == (0, 0.0, 0)
    assert first.arrival_rate is None and first.completion_rate is None  # no delta yet

    for _ in range(4):
        queue.put(clock.wall(), 1.0)
    clock.advance(2.0)
    item = queue.take_nowait(clock.wall())
    assert item is not None
    queue.complete(item)
    queue.take_nowait(clock.wall())
    obs = (await sampler.sample())["p"]
    assert obs.depth == 2
    assert obs.oldest_wait_s == pytest.approx(2.0)
    assert obs.in_flight == 1
    assert obs.arrival_rate == pytest.approx(4 / 2.0)
    assert obs.completion_rate == pytest.approx(1 / 2.0)
    assert obs.fresh


async def test_idle_consumer_cancelled_loses_no_item() -> None:
    """A consumer woken for an item but cancelled before taking it passes the wake-up on."""
    clock = ManualClock()
    queue = reset_queue("t-cancel")
    first = asyncio.create_task(queue.take(clock))
    second = asyncio.create_task(queue.take(clock))
    await asyncio.sleep(0)
    queue.put(clock.wall(), 0.0)
    first.cancel()  # woken, not yet resumed
    got = await asyncio.wait_for(second, 5)
    assert got.id == 1
    assert len(queue) == 0 and queue.in_flight == 1
    with pytest.raises(asyncio.CancelledError):
        await first


def test_pools_share_one_sampler_and_queues_by_name(registries: dict[str, Registry[Any]]) -> None:
    config = parse_config(
        """
pools:
  - name: a
    queue: {kind: memory, name: shared}
    sla: {max_wait: 2s}
    capacity: {max: 2}
    groups: [{name: g, provider: local}]
  - name: b
    queue: {kind: memory, name: other}
    sla: {max_wait: 2s}
    capacity: {max: 2}
    groups: [{name: g, provider: local}]
""",
        registries=registries,
    )
    keys = {MemorySource.sampler_key(p.queue.settings) for p in config.pools}
    assert len(keys) == 1
    assert get_queue("shared") is get_queue("shared")
    assert get_queue("shared") is not get_queue("other")


def test_unknown_memory_setting_is_rejected(registries: dict[str, Registry[Any]]) -> None:
    from autoscaler.config.yaml_lines import ConfigFileError

    with pytest.raises(ConfigFileError) as info:
        parse_config(
            "pools:\n  - name: a\n    queue: {kind: memory, nam: x}\n    sla: {max_wait: 2s}\n"
            "    capacity: {max: 2}\n    groups: [{name: g, provider: local}]\n",
            registries=registries,
        )
    assert "pools[0].queue.nam: unknown key" in str(info.value)
