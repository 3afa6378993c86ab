"""Crash-loop backoff through the tick pipeline, with real processes that exit at once: the
crashing group backs off, reports unavailable after CRASH_LIMIT fast failures, and the pool's
capacity falls back to the next group."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.provider import GroupId
from autoscaler.providers.local.client import CRASH_BACKOFF_MAX_S, CRASH_LIMIT, LocalClient
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue

CRASH = "import sys; sys.exit(3)"
SERVE = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
         "while True: time.sleep(0.05)")


def config_text(python: str) -> str:
    return f"""
controller: {{interval: 1s, drain_timeout: 5s}}
pools:
  - name: chat
    queue: {{kind: memory, name: crash-loop}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 4, boot_time: 0s}}
    groups:
      - {{name: bad, provider: local, command: ["{python}", "-c", "{CRASH}"]}}
      - {{name: good, provider: local, command: ["{python}", "-c", {SERVE!r}]}}
"""


async def test_a_crash_looping_group_falls_back_to_the_next(
    registries: dict[str, Registry[Any]], tmp_path: Path,
) -> None:
    reset_queue("crash-loop")
    clock = ManualClock()
    text = config_text(sys.executable).replace("'", '"')
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(parse_config(text, registries=registries), registries=registries,
                          clock=clock, telemetry=telemetry)
    client = daemon.accounts["local"].client
    assert isinstance(client, LocalClient)
    bad = client.groups[GroupId("chat", "bad")]
    good = GroupId("chat", "good")
    await daemon.start()
    try:
        with capture_logs() as logs:
            for _ in range(200):  # ticks; each crash is awaited, then the backoff skipped
                await daemon.loop.tick()
                await daemon.loop.settle(first_outcome=True)
                if not bad.state().available:
                    break
                loop = asyncio.get_running_loop()
                end = loop.time() + 20
                # every instance launched has crashed before the clock moves: one still
                # starting on a slow machine would otherwise outlive the 10 s grace on this
                # clock and reset the failure count (more starts than the test allows)
                while bad.state().desired > 0:
                    assert loop.time() < end, "the crashing instance never exited"
                    await asyncio.sleep(0.02)
                clock.advance(CRASH_BACKOFF_MAX_S * 0.1)
            end = asyncio.get_running_loop().time() + 20
            while bad.state().desired > 0:  # the last launch's sibling, on a slow machine
                assert asyncio.get_running_loop().time() < end, "a crashing instance lingers"
                await asyncio.sleep(0.02)
            await daemon.loop.tick()
            await daemon.loop.settle()
        state = (await client.describe([good]))[good]
        assert isinstance(state, GroupState)
        assert not bad.state().available and "crash loop" in bad.state().reason
        assert state.desired == 2  # the pool's min now runs on the next group
        assert bad.fast_failures >= CRASH_LIMIT
        starts = [e for e in logs if e["event"] == "instance_started" and e["group"] == "bad"]
        # min 2 at once: at most 2 launches per backoff, not one per tick
        assert len(starts) <= 2 * CRASH_LIMIT
        assert any(e["event"] == "group_crash_looping" for e in logs)
        # visible in metrics: every fast failure counted, the group held unavailable
        sample = telemetry.registry.get_sample_value
        assert sample("autoscaler_instance_fast_failures_total",
                      {"pool": "chat", "group": "bad"}) == bad.fast_failures_total
        assert sample("autoscaler_group_available", {"pool": "chat", "group": "bad"}) == 0
        assert sample("autoscaler_group_available", {"pool": "chat", "group": "good"}) == 1
    finally:
        await daemon.close(5.0)
