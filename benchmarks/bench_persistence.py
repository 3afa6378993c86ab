"""Cost of building the state records per tick at 1000 pools (``ControllerPersistence.save``
without the round trip): controller state alone, and with what a restart now also resumes
(each pool's capacity holds, boot-watch timings and counter baselines).

Between saves every pool decides one more 5 s tick (not timed), under a steady load (the
guards' window values stay, only their times and the policy's estimators move) or a load that
changes every tick (every record must be written). Each is measured writing every pool every
tick (``refresh_s=0``, the behaviour before records were skipped) and with the default
``REFRESH_S``, side by side in one run.

Every pool has two groups, one of them held and timed, and counter readings for both
counters; the controller state is the ``sla`` policy's after a few ticks (the largest). The
store is an in-memory ``StateStore`` (the Redis round trip is one pipelined call per server,
unchanged). Prints the median and p90 of the CPU time per save, and the bytes per record.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from autoscaler.config.models import parse_config
from autoscaler.config.plugins import default_registries
from autoscaler.config.to_core import controller_for
from autoscaler.core.availability import BootWatch, Holds
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import GroupId
from autoscaler.ports.source import Baselines
from autoscaler.runtime.persistence import (
    REFRESH_S,
    ControllerPersistence,
    PoolBinding,
    codec_for,
)

POOLS = 1000
SAVES = 30


@dataclass
class Runtime:
    name: str
    controller: PoolController
    state: ControllerState


class MemoryStore:
    location = "memory"

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    async def load(self, pools: Sequence[str]) -> Mapping[str, str]:
        return {p: self.records[p] for p in pools if p in self.records}

    async def save(self, records: Mapping[str, str]) -> None:
        self.records.update(records)

    async def close(self) -> None:
        return None


class Sampler:
    """A sampler with counter baselines for every pool (the ``CounterBaselines`` port)."""

    def __init__(self, baselines: dict[str, Baselines]) -> None:
        self._baselines = baselines

    async def sample(self) -> Mapping[str, Observation]:
        return {}

    async def close(self) -> None:
        return None

    def baselines(self) -> Mapping[str, Baselines]:
        return self._baselines

    def resume_baselines(self, baselines: Mapping[str, Baselines]) -> list[str]:
        return []


FLEET = FleetState((GroupState("spot", Market.SPOT, 4, 0, 4),
                    GroupState("od", Market.ON_DEMAND, 2, 0, 2)))


def _tick(t: int, changing: bool) -> tuple[Observation, FleetState]:
    """Tick ``t``'s observation and fleet: steady, or a fleet whose size moves every tick (its
    desired size is in the guards' state, so every record changes)."""
    obs = Observation(time=1000.0 + 5 * t, depth=10, oldest_wait_s=0.5, in_flight=6,
                      arrival_rate=3.0, completion_rate=3.0)
    if not changing:
        return obs, FLEET
    n = 4 + t % 3
    return obs, FleetState((GroupState("spot", Market.SPOT, n, 0, n), FLEET.groups[1]))


def _runtimes() -> list[Runtime]:
    text = "controller: {interval: 5s}\npools:\n" + "".join(
        f"  - {{name: p{i}, queue: {{kind: memory, name: q{i}}}, sla: {{max_wait: 2s}},"
        f" capacity: {{max: 50, boot_time: 60s, boot_timeout: 300s}},"
        f" policy: {{kind: sla, service_time: 1.0}},"
        f" groups: [{{name: spot, market: spot, provider: local}},"
        f" {{name: od, provider: local}}]}}\n"
        for i in range(POOLS))
    registries = default_registries()
    config = parse_config(text, registries=registries)
    out = []
    fleet = FLEET
    for pool in config.pools:
        controller = controller_for(pool, 5.0, registries["policies"])
        state = controller.initial_state()
        for t in range(6):
            obs = Observation(time=1000.0 + 5 * t, depth=10 + t, oldest_wait_s=0.5,
                              in_flight=6, arrival_rate=3.0 + t, completion_rate=3.0)
            _, state = controller.decide(obs, fleet, state)
        out.append(Runtime(pool.name, controller, state))
    return out


def measure(extras: bool, *, changing: bool, refresh_s: float) -> tuple[list[float], int]:
    runtimes = _runtimes()
    clock = ManualClock(start=1030.0)
    store = MemoryStore()
    bindings = [PoolBinding(rt.name, store, codec_for(rt.controller), "f" * 32, "q" * 16)
                for rt in runtimes]
    persistence = ControllerPersistence(bindings, clock, refresh_s=refresh_s)
    holds: Holds[GroupId] = Holds()
    watches: dict[str, BootWatch[GroupId]] = {}
    baselines: dict[str, Baselines] = {}
    waiting = GroupState("spot", Market.SPOT, 6, 2, 4)
    for rt in runtimes:
        holds.mark(GroupId(rt.name, "spot"), 1000.0, "insufficient capacity")
        watch = watches[rt.name] = BootWatch(300.0)
        watch.observe(GroupId(rt.name, "spot"), waiting, 1000.0)
        baselines[rt.name] = ((1030.0, 123456), (1030.0, 123400))
    samplers = [Sampler(baselines)]
    cpu = []
    for tick in range(6, 6 + SAVES):
        clock.advance(5.0)
        obs, fleet = _tick(tick, changing)
        for rt in runtimes:  # the next tick's state (not timed)
            _, rt.state = rt.controller.decide(obs, fleet, rt.state)
        started = time.process_time()
        if extras:
            asyncio.run(persistence.save(runtimes, holds=holds, samplers=samplers,
                                         watches=watches))
        else:
            asyncio.run(persistence.save(runtimes))
        cpu.append(time.process_time() - started)
    size = sum(len(r) for r in store.records.values()) // len(store.records)
    return cpu, size


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for changing in (False, True):
        for extras in (False, True):
            label = "state + holds, timings, baselines" if extras else "controller state only"
            label += ", load changing" if changing else ", load steady"
            figures = []
            for refresh_s in (0.0, REFRESH_S):
                cpu, size = measure(extras, changing=changing, refresh_s=refresh_s)
                p90 = statistics.quantiles(cpu, n=10)[-1]
                figures.append(f"median {statistics.median(cpu) * 1e3:5.1f} ms p90 "
                               f"{p90 * 1e3:5.1f} ms")
            print(f"{label:52s} {POOLS} pools, save CPU per tick: every tick "
                  f"{figures[0]} | refresh {REFRESH_S:.0f} s {figures[1]}; "
                  f"{size} bytes per record")


if __name__ == "__main__":
    main()
