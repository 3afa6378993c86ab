"""Wire a ``Config`` into samplers, providers and controllers, and run them.

``Daemon.build`` is shared by ``autoscaler run`` and ``autoscaler demo``; ``run_daemon`` is the
entry function of ``autoscaler run`` (tests call it in-process).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Hashable
from typing import Any, TextIO

import structlog
from pydantic import BaseModel

from autoscaler.config.models import Config, default_registries
from autoscaler.config.to_core import controller_for
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import Provider
from autoscaler.ports.source import QueueSampler
from autoscaler.ports.telemetry import NullTelemetry, Telemetry
from autoscaler.registry import Registry, RegistryError
from autoscaler.runtime.actuator import Actuator
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.loop import ControlLoop, PoolRuntime
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.persistence import build_persistence
from autoscaler.runtime.supervisor import Supervisor

log = structlog.get_logger("autoscaler.runtime")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class BuildError(ValueError):
    """The config is valid YAML but cannot be wired (a provider refused its settings)."""


def provider_timeout(config: Config) -> float:
    """How long one provider call may take before the tick gives up on it."""
    return max(5.0, 2 * config.controller.interval)


class Daemon:
    """Everything ``Config`` turns into: samplers, providers, controllers and the loop."""

    def __init__(self, config: Config, loop: ControlLoop, samplers: list[QueueSampler]) -> None:
        self.config = config
        self.loop = loop
        self.samplers = samplers

    @property
    def providers(self) -> list[Provider]:
        return [p for rt in self.loop.pools for p in rt.providers.values()]

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        registries: dict[str, Registry[Any]] | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        dry_run: bool = False,
    ) -> Daemon:
        regs = registries or default_registries()
        clock = clock or LoopClock()
        ctl = config.controller
        groups: dict[tuple[str, Hashable], list[tuple[str, BaseModel]]] = defaultdict(list)
        for pool in config.pools:
            kind = regs["sources"].get(pool.queue.kind)
            groups[(pool.queue.kind, kind.sampler_key(pool.queue.settings))].append(
                (pool.name, pool.queue.settings)
            )
        samplers: list[QueueSampler] = [
            regs["sources"].get(kind).make_sampler(members, clock, ctl.sample_timeout)
            for (kind, _key), members in groups.items()
        ]
        runtimes = []
        for pool in config.pools:
            providers: dict[str, Provider] = {}
            for group in pool.groups:
                try:
                    providers[group.name] = regs["providers"].get(group.provider)(
                        group, pool, clock
                    )
                except (ValueError, TypeError, RegistryError) as exc:
                    raise BuildError(str(exc)) from exc
            controller = controller_for(pool, ctl.interval, regs["policies"])
            runtimes.append(PoolRuntime(
                pool.name, controller, providers,
                Actuator(providers, provider_timeout(config)), controller.initial_state(),
            ))
        loop = ControlLoop(
            runtimes, samplers, clock, telemetry or NullTelemetry(),
            interval_s=ctl.interval, describe_timeout_s=provider_timeout(config), dry_run=dry_run,
        )
        loop.persistence = build_persistence(config, runtimes, clock, telemetry, read_only=dry_run)
        return cls(config, loop, samplers)

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.providers))

    async def close(self, drain_timeout_s: float) -> None:
        """Stop every provider's instances within the deadline, then release the samplers."""
        results = await asyncio.gather(
            *(p.close(drain_timeout_s) for p in self.providers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.error("provider_close_failed", error=repr(result))
        await asyncio.gather(*(s.close() for s in self.samplers), return_exceptions=True)
        if self.loop.persistence is not None:
            await self.loop.persistence.close()


async def run_once(daemon: Daemon, out: TextIO) -> int:
    """One tick; one JSON object per pool per line on ``out``."""
    if daemon.loop.persistence is not None:  # one look must not overwrite a live daemon's state
        daemon.loop.persistence.read_only = True
    try:
        await daemon.start()  # inside: a provider that fails half-way is still closed
        for result in await daemon.loop.tick():
            out.write(json.dumps(result.as_json(), sort_keys=True, default=str) + "\n")
        out.flush()
    finally:
        await daemon.close(daemon.config.controller.drain_timeout)
    return EXIT_OK


async def run_daemon(
    config: Config,
    *,
    registries: dict[str, Registry[Any]] | None = None,
    dry_run: bool = False,
    once: bool = False,
    out: TextIO | None = None,
    install_signals: bool = True,
    supervisor: Supervisor | None = None,
) -> int:
    """The daemon: serve metrics, tick until a signal, drain within ``drain_timeout``."""
    ctl = config.controller
    telemetry = NullTelemetry() if once else PrometheusTelemetry()
    try:
        daemon = Daemon.build(config, registries=registries, telemetry=telemetry, dry_run=dry_run)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if once:
        return await run_once(daemon, out or sys.stdout)
    assert isinstance(telemetry, PrometheusTelemetry)
    try:
        port = telemetry.serve(ctl.metrics_host, ctl.metrics_port)
    except OSError as exc:  # port taken, address not local: name the setting, not a traceback
        print(f"error: controller.metrics_address {ctl.metrics_address}: cannot listen: "
              f"{exc.strerror or exc}", file=sys.stderr)
        await daemon.close(0.0)  # nothing started yet: release the samplers' connections
        return EXIT_FAILED
    sup = supervisor or Supervisor()
    if install_signals:
        sup.install_signal_handlers()
    log.info("daemon_started", pools=[p.name for p in config.pools], interval_s=ctl.interval,
             metrics_host=ctl.metrics_host, metrics_port=port, dry_run=dry_run)
    clock = daemon.loop.clock
    try:
        try:
            await daemon.start()
            sup.spawn("control-loop", daemon.loop.run(sup.stop))
            await sup.stop.wait()
        finally:
            started = clock.monotonic()
            log.info("daemon_draining", drain_timeout_s=ctl.drain_timeout)
            await sup.drain(ctl.drain_timeout)
            left = max(0.0, ctl.drain_timeout - (clock.monotonic() - started))
            await daemon.close(left)
    finally:
        telemetry.shutdown()
        if install_signals:
            sup.remove_signal_handlers()
    log.info("daemon_stopped", failure=sup.failure)
    return EXIT_FAILED if sup.failure else EXIT_OK
