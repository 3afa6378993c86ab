"""``autoscaler demo``: the whole loop for about a minute on an embedded config.

Without ``REDIS_URL``: a ``memory`` queue and in-process workers of the ``local`` provider, so it
runs anywhere. With ``REDIS_URL``: the same pool on a ``redis-list`` queue served by real
``autoscaler worker`` processes started by the ``local`` provider. Either way each instance
serves the pool's ``slots_per_instance`` (2) requests at once (in-process: one consumer task per
slot; processes: ``AUTOSCALER_SLOTS``), and worker output goes through the daemon's logger at
the demo's level (warning), so only a worker's warnings and errors show. Either way the daemon's own
``ControlLoop`` decides, a seeded bursty load generator feeds the queue, a live table (or plain
lines without a terminal) shows each tick, and a summary closes the run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table

from autoscaler.config.models import Config, parse_config
from autoscaler.config.plugins import default_registries
from autoscaler.emulator.loadgen import (
    BurstPattern,
    MemoryProducer,
    Producer,
    RedisListProducer,
    generate,
)
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.logs import configure_logging
from autoscaler.runtime.loop import PoolTick
from autoscaler.runtime.supervisor import Supervisor
from autoscaler.sources.memory import MemoryQueue, reset_queue

log = structlog.get_logger("autoscaler.emulator.demo")

DEMO_QUEUE = "demo"

DEMO_CONFIG = """\
controller:
  interval: 1s
  drain_timeout: 10s
  log_level: warning
pools:
  - name: demo
    queue: {queue}
    sla: {{max_wait: 3s, target: 0.95}}
    capacity: {{min: 1, max: 8, slots_per_instance: 2, boot_time: 3s}}
    policy: {{kind: {policy}{policy_params}}}
    behavior:
      scale_down: {{stabilization_window: 10s}}
      scale_to_zero_after: 30s
    groups:
      - {{name: local, provider: local, hourly_price: 2.5{command}}}
"""


# The demo compresses a GPU fleet's minutes into seconds (boot 3 s, 1 s ticks); the sla
# policy's estimator windows shrink with it, or one burst would hold the fleet for a minute.
DEMO_SLA_WINDOWS = (
    ", level_window: 10, service_window: 10, dispersion_window: 30, trend_window: 120,"
    " budget_window: 60, burst_window: 10"
)


def worker_command(key: str) -> list[str]:
    """``autoscaler worker`` next to this interpreter, else ``python -m autoscaler``. No
    ``--url``: the local provider passes the pool's queue URL as ``AUTOSCALER_QUEUE_URL``."""
    script = Path(sys.executable).with_name("autoscaler")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "autoscaler"]
    return [*head, "worker", "--kind", "redis-list", "--key", key]


def demo_config(policy: str, redis_url: str | None, key: str) -> Config:
    if redis_url is None:
        queue, command = f"{{kind: memory, name: {DEMO_QUEUE}}}", ""
    else:
        queue = f'{{kind: redis-list, url: "{redis_url}", key: "{key}"}}'
        argv = ", ".join(f'"{a}"' for a in worker_command(key))
        command = f", command: [{argv}]"  # output: log, filtered at the demo's level
    text = DEMO_CONFIG.format(
        queue=queue, policy=policy, command=command,
        policy_params=DEMO_SLA_WINDOWS if policy == "sla" else "",
    )
    return parse_config(text, name="<embedded demo config>")


@dataclass
class Stats:
    """What the summary reports, accumulated tick by tick."""

    interval_s: float
    rows: deque[tuple[str, ...]] = field(default_factory=lambda: deque(maxlen=18))
    instance_seconds: float = 0.0
    scale_actions: int = 0
    max_oldest_wait: float = 0.0
    ticks: int = 0

    def add(self, tick: PoolTick, elapsed: float) -> tuple[str, ...]:
        obs, fleet, decision = tick.observation, tick.fleet, tick.decision
        self.ticks += 1
        if fleet is not None:
            self.instance_seconds += (fleet.running + fleet.booting) * self.interval_s
        if tick.acted:
            self.scale_actions += 1
        wait = obs.oldest_wait_s if obs else None
        if wait is not None:
            self.max_oldest_wait = max(self.max_oldest_wait, wait)
        row = (
            f"{elapsed:5.0f}s",
            str(obs.depth) if obs else "?",
            ("-" if obs and obs.depth == 0 else "?") if wait is None else f"{wait:.1f}s",
            f"{fleet.running}/{fleet.booting}" if fleet else "?",
            str(decision.desired) if decision else "?",
            (decision.reason if decision else "; ".join(tick.errors))[:70],
        )
        self.rows.append(row)
        return row


HEADERS = ("time", "depth", "oldest wait", "run/boot", "desired", "reason")


def table(stats: Stats) -> Table:
    t = Table(title="autoscaler demo: pool 'demo' (queue wait vs a 3 s SLA)", expand=False)
    for header in HEADERS:
        t.add_column(header, no_wrap=header != "reason")
    for row in stats.rows:
        t.add_row(*row)
    return t


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(stats: Stats, sent: int, queue: MemoryQueue | None, completed: int,
            max_wait_s: float) -> list[str]:
    lines = [
        f"requests sent:      {sent}",
        f"completed:          {completed}",
        f"instance-seconds:   {stats.instance_seconds:.0f}",
        f"scale actions:      {stats.scale_actions}",
    ]
    if queue is not None and queue.waits:
        waits = list(queue.waits)
        met = sum(1 for w in waits if w <= max_wait_s) / len(waits)
        lines += [
            f"SLA attainment:     {met:.1%} of requests waited <= {max_wait_s:g}s",
            f"wait p50/p95/max:   {percentile(waits, 0.5):.2f}s / {percentile(waits, 0.95):.2f}s"
            f" / {max(waits):.2f}s",
        ]
    else:
        lines.append(f"max oldest wait:    {stats.max_oldest_wait:.2f}s (sampled each tick)")
    return lines


async def _drain_queue(daemon: Daemon, stop: asyncio.Event, limit_s: float) -> None:
    """After the load: keep ticking until nothing waits or is in flight (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while loop.time() < end and not stop.is_set():
        observations = await asyncio.gather(*(s.sample() for s in daemon.samplers))
        if all(o.demand == 0 for obs in observations for o in obs.values()):
            return
        await asyncio.sleep(0.5)


async def run_demo(duration: float, seed: int, plain: bool, policy: str | None = None) -> int:
    configure_logging("warning")
    redis_url = os.environ.get("REDIS_URL") or None
    key = f"autoscaler:demo:{os.getpid()}"
    registries = default_registries()
    chosen = policy or ("sla" if "sla" in registries["policies"] else "threshold")
    config = demo_config(chosen, redis_url, key)
    pool = config.pools[0]
    queue = reset_queue(DEMO_QUEUE) if redis_url is None else None
    producer: Producer = (MemoryProducer(DEMO_QUEUE) if redis_url is None
                          else RedisListProducer(redis_url, key, prefix="demo"))
    clock = LoopClock()
    daemon = Daemon.build(config, registries=registries, clock=clock)
    stats = Stats(config.controller.interval)
    console = Console()
    live_mode = console.is_terminal and not plain
    started = time.monotonic()
    sent = 0

    async def load() -> None:
        nonlocal sent
        sent = await generate(BurstPattern(), producer, clock, duration, seed)
        await _drain_queue(daemon, sup.stop, limit_s=30.0)

    where = ("memory queue, in-process workers" if redis_url is None
             else "Redis list, worker processes")
    console.print(f"autoscaler demo: {duration:g}s of bursty load, policy {chosen}, {where}")
    sup = Supervisor()
    sup.install_signal_handlers()
    live = Live(table(stats), console=console, refresh_per_second=4) if live_mode else None

    def on_tick(results: list[PoolTick]) -> None:
        row = stats.add(results[0], time.monotonic() - started)
        if live is not None:
            live.update(table(stats))
        else:
            console.print("  ".join(f"{h}={v}" for h, v in zip(HEADERS, row, strict=True)),
                          highlight=False, soft_wrap=True)

    try:
        if live is not None:
            live.start()
        await daemon.start()
        sup.spawn("load-generator", load(), finite=True)
        sup.spawn("control-loop", daemon.loop.run(sup.stop, on_tick))
        await sup.stop.wait()
        await sup.drain(config.controller.drain_timeout)
    finally:
        if live is not None:
            live.stop()
        sup.remove_signal_handlers()
        await daemon.close(config.controller.drain_timeout)
        completed = await _completed(queue, redis_url, key)
        await producer.close()
    for line in summary(stats, sent, queue, completed, pool.sla.max_wait):
        console.print(line, highlight=False)
    return 1 if sup.failure else 0


async def _completed(queue: MemoryQueue | None, redis_url: str | None, key: str) -> int:
    if queue is not None:
        return queue.completed_total
    assert redis_url is not None
    import redis.asyncio as aioredis

    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        value = await client.get(key + ":completed")
        # The queue and every key the workers keep beside it (processing lists, heartbeats).
        leftovers = [k async for k in client.scan_iter(match=key + ":*")]
        await client.delete(key, *leftovers)
    finally:
        await client.aclose()
    return int(value or 0)
