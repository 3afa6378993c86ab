"""Wire a ``Config`` into samplers, accounts, controllers and the loop, and run them.

``Daemon.build`` is shared by ``autoscaler run`` and ``autoscaler demo``; ``run_daemon`` is the
entry function of ``autoscaler run`` (tests call it in-process).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any, TextIO

import structlog
from pydantic import BaseModel

from autoscaler.config.models import Config
from autoscaler.config.plugins import default_registries
from autoscaler.config.providers import accounts_of, managed_group
from autoscaler.config.to_core import controller_for
from autoscaler.ports.clock import Clock
from autoscaler.ports.observations import InvalidObservations
from autoscaler.ports.provider import GroupId, ManagedGroup
from autoscaler.ports.source import QueueSampler
from autoscaler.ports.telemetry import InstanceFailures, NullTelemetry, Telemetry
from autoscaler.registry import Registry, RegistryError
from autoscaler.runtime.accounts import AccountRuntime
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.extensions import Extensions, build_extensions
from autoscaler.runtime.gate import ActuationGate, DryRunGate, OpenGate
from autoscaler.runtime.leader import LeaderGate, make_lease
from autoscaler.runtime.loop import ControlLoop, PoolRuntime, PoolTick
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.peers import PeerWatch
from autoscaler.runtime.persistence import build_persistence
from autoscaler.runtime.recorder import TraceRecorder
from autoscaler.runtime.reload import ConfigReloader
from autoscaler.runtime.sdnotify import Notifier, watchdog_interval_s
from autoscaler.runtime.supervisor import CANCEL_GRACE_S, Supervisor

log = structlog.get_logger("autoscaler.runtime")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class BuildError(ValueError):
    """The config is valid YAML but cannot be wired (a provider refused its settings)."""


class Daemon:
    """Everything ``Config`` turns into: samplers, accounts, controllers and the loop."""

    def __init__(self, config: Config, loop: ControlLoop, samplers: list[QueueSampler]) -> None:
        self.config = config
        self.loop = loop
        self.samplers = samplers
        self.extensions: Extensions | None = None

    @property
    def accounts(self) -> dict[str, AccountRuntime]:
        return self.loop.accounts

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        registries: dict[str, Registry[Any]] | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        dry_run: bool = False,
        gate: ActuationGate | None = None,
    ) -> Daemon:
        """Wire everything; no I/O (clients connect in ``start``)."""
        regs = registries or default_registries()
        clock = clock or LoopClock()
        ctl = config.controller
        keyed: dict[tuple[str, Hashable], list[tuple[str, BaseModel]]] = defaultdict(list)
        for pool in config.pools:
            kind = regs["sources"].get(pool.queue.kind)
            keyed[(pool.queue.kind, kind.sampler_key(pool.queue.settings))].append(
                (pool.name, pool.queue.settings)
            )
        samplers: list[QueueSampler] = [
            regs["sources"].get(kind).make_sampler(members, clock, ctl.sample_timeout)
            for (kind, _key), members in keyed.items()
        ]
        telemetry = telemetry or NullTelemetry()
        for sampler in samplers:  # sources count implausible timestamps; telemetry exports them
            invalid = getattr(sampler, "invalid", None)
            if isinstance(invalid, InvalidObservations):
                invalid.sink = telemetry.record_observation_invalid
        accounts = _accounts(config, regs["providers"], clock)
        for account in accounts.values():  # providers count fast failures; telemetry exports
            failures = getattr(account.client, "instance_failures", None)
            if isinstance(failures, InstanceFailures):
                failures.sink = telemetry.record_instance_fast_failure
        runtimes = []
        for pool in config.pools:
            controller = controller_for(pool, ctl.interval, regs["policies"])
            groups = tuple(GroupId(pool.name, g.name) for g in pool.groups)
            runtimes.append(PoolRuntime(pool.name, controller, groups,
                                        controller.initial_state()))
        ext = build_extensions(config, runtimes, clock, telemetry,
                               gate or (DryRunGate() if dry_run else OpenGate()))
        loop = ControlLoop(runtimes, samplers, accounts, clock, telemetry,
                           interval_s=ctl.interval, gate=ext.gate, cross_pool=ext.cross_pool)
        loop.persistence = build_persistence(config, runtimes, clock, telemetry, read_only=dry_run)
        daemon = cls(config, loop, samplers)
        daemon.extensions = ext  # pauses and budgets (autoscaler.runtime.extensions)
        return daemon

    async def start(self) -> None:
        """Start every account concurrently. One that fails is logged and retried later; its
        pools are skipped until it starts, the other accounts' pools run."""
        await asyncio.gather(*(a.start() for a in self.accounts.values()))

    async def close(self, drain_timeout_s: float) -> list[str]:
        """Stop the actuators (a call in progress gets part of the deadline), stop every
        account's instances within the deadline, then release the samplers. Returns what had
        to be killed at the deadline (see ``AccountRuntime.close``); empty on a clean stop."""
        await self.loop.stop_actuators(min(5.0, drain_timeout_s))
        killed = await asyncio.gather(*(a.close(drain_timeout_s)
                                        for a in self.accounts.values()))
        await asyncio.gather(*(s.close() for s in self.samplers), return_exceptions=True)
        if self.loop.persistence is not None:
            if self.loop.persistence.loaded:  # what ticks skipped as unchanged (persistence)
                await self.loop.save_state(every_pool=True)
            await self.loop.persistence.close()
        if self.extensions is not None:
            await self.extensions.close()
        return [k for account in killed for k in account]


def _accounts(
    config: Config, providers: Registry[Any], clock: Clock
) -> dict[str, AccountRuntime]:
    """One client per account, built from all the groups that name it."""
    specs = accounts_of(config, providers)
    members: dict[str, list[ManagedGroup]] = defaultdict(list)
    for pool in config.pools:
        for group in pool.groups:
            members[group.provider].append(managed_group(pool, group))
    accounts = {}
    for name, groups in members.items():
        spec = specs[name]
        try:
            client = providers.get(spec.kind).client(spec, groups, clock)
        except (ValueError, TypeError, RegistryError) as exc:
            raise BuildError(f"provider account {name!r}: {exc}") from exc
        accounts[name] = AccountRuntime(spec, client, [g.id for g in groups], clock)
    return accounts


async def run_once(daemon: Daemon, out: TextIO) -> int:
    """One tick, waiting for its actuations; one JSON object per pool per line on ``out``.

    Exits non-zero when a pool could not be decided (no observation, fleet not described,
    policy failure), its queue could not be sampled this tick (a stale observation: the pool
    was held on old data, which a one-shot look must not report as success), a resize failed,
    or closing had to kill instances at the drain deadline."""
    failed = False
    if daemon.loop.persistence is not None:  # one look must not overwrite a live daemon's state
        daemon.loop.persistence.read_only = True
    if daemon.extensions is not None and daemon.extensions.budget is not None:
        daemon.extensions.budget.read_only = True  # nor its month's spend
    try:
        await daemon.start()  # inside: a provider that fails half-way is still closed
        results = await daemon.loop.tick()
        outcomes = await daemon.loop.settle(first_outcome=True)
        for result in results:
            errors = [f"{o.group.group}: {o.error}" for o in outcomes
                      if o.ticket.pool == result.pool and o.error is not None]
            accepted = any(o.error is None for o in outcomes if o.ticket.pool == result.pool)
            if result.observation is not None and not result.observation.fresh:
                errors.insert(0, "queue not sampled: stale observation")  # a hold, not a look
            if result.decision is None or errors:
                failed = True
            if result.acted or errors:
                acted = accepted if result.acted else False
                result = replace(result, acted=acted, errors=(*result.errors, *errors))
            out.write(json.dumps(result.as_json(), sort_keys=True, default=str) + "\n")
        out.flush()
    finally:
        killed = await daemon.close(daemon.config.controller.drain_timeout)
    if killed:
        log.error("drain_incomplete", killed=killed)
    return EXIT_FAILED if failed or killed else EXIT_OK


async def run_daemon(
    config: Config,
    *,
    registries: dict[str, Registry[Any]] | None = None,
    dry_run: bool = False,
    once: bool = False,
    out: TextIO | None = None,
    install_signals: bool = True,
    supervisor: Supervisor | None = None,
    config_path: str | None = None,
    watch_config: bool = False,
    record_dir: str | None = None,
) -> int:
    """The daemon: serve metrics, tick until a signal, drain within ``drain_timeout``.

    With ``config_path``, SIGHUP (and with ``watch_config`` a change of the file) reloads the
    config between ticks (``autoscaler.runtime.reload``). ``record_dir``: write what each tick
    observed as replayable traces (``runtime.recorder``)."""
    ctl = config.controller
    telemetry = NullTelemetry() if once else PrometheusTelemetry()
    leader: LeaderGate | None = None
    if ctl.leader_election is not None and not dry_run:
        election = ctl.leader_election
        leader = LeaderGate(
            make_lease(election), LoopClock(),
            on_change=telemetry.record_leader if isinstance(telemetry, PrometheusTelemetry)
            else None,
            retry_s=ctl.interval,
        )
    elif isinstance(telemetry, PrometheusTelemetry):
        telemetry.record_leader(not dry_run)
    try:
        daemon = Daemon.build(config, registries=registries, telemetry=telemetry, dry_run=dry_run,
                              gate=leader)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if once:
        if leader is None:
            return await run_once(daemon, out or sys.stdout)
        # One look among replicas: act only if the lease is free now, then hand it back.
        stop = asyncio.Event()
        stop.set()
        await leader.step()
        try:
            return await run_once(daemon, out or sys.stdout)
        finally:
            await leader.run(stop)  # with stop set: releases the lease, closes its client
    assert isinstance(telemetry, PrometheusTelemetry)
    telemetry.health.configure(ctl.interval, tuple(p.name for p in config.pools))
    telemetry.fleet.configure(config)
    try:
        port = telemetry.serve(ctl.metrics_host, ctl.metrics_port)
    except OSError as exc:  # port taken, address not local: name the setting, not a traceback
        print(f"error: controller.metrics_address {ctl.metrics_address}: cannot listen: "
              f"{exc.strerror or exc}", file=sys.stderr)
        await daemon.close(0.0)  # nothing started yet: release the samplers' connections
        return EXIT_FAILED
    recorder = None
    if record_dir is not None:
        try:
            recorder = TraceRecorder(record_dir)
        except OSError as exc:
            print(f"error: --record {record_dir}: {exc.strerror or exc}", file=sys.stderr)
            telemetry.shutdown()
            await daemon.close(0.0)
            return EXIT_FAILED
    sup = supervisor or Supervisor()
    if install_signals:
        sup.install_signal_handlers()
    log.info("daemon_started", pools=[p.name for p in config.pools], interval_s=ctl.interval,
             metrics_host=ctl.metrics_host, metrics_port=port, dry_run=dry_run)
    clock = daemon.loop.clock
    killed: list[str] = []
    notifier = _systemd_notifier(ctl.interval)
    reloader = None
    if config_path is not None:
        reloader = ConfigReloader(
            daemon, config_path, lambda new: Daemon.build(
                new, registries=registries, clock=clock, telemetry=telemetry, dry_run=dry_run,
                gate=leader),
            telemetry=telemetry, registries=registries, watch=watch_config, leader=leader)
        if install_signals:
            reloader.install_signal_handler()
    try:
        try:
            if leader is not None:
                sup.spawn("leader-lease", leader.run(
                    sup.stop, before_release=lambda: daemon.loop.save_state(every_pool=True)))
            await daemon.start()
            sup.spawn("control-loop", daemon.loop.run(
                sup.stop, on_tick=_each_tick(notifier, recorder)))
            if reloader is not None:
                sup.spawn("config-reload", reloader.run(sup.stop))
            if leader is None and not dry_run:  # a lone actor: warn if it is not alone
                sup.spawn("peer-watch", PeerWatch(daemon, telemetry=telemetry).run(sup.stop))
            await sup.stop.wait()
        finally:
            drain_timeout = daemon.config.controller.drain_timeout  # a reload may change it
            notifier.stopping(drain_timeout, grace_s=CANCEL_GRACE_S + 10.0)
            started = clock.monotonic()
            log.info("daemon_draining", drain_timeout_s=drain_timeout)
            await sup.drain(drain_timeout)
            if reloader is not None:
                await reloader.close(drain_timeout - (clock.monotonic() - started))
            left = max(0.0, drain_timeout - (clock.monotonic() - started))
            killed = await daemon.close(left)
    finally:
        if recorder is not None:  # writes what is queued and fsyncs: off the event loop
            await asyncio.to_thread(recorder.close)
        telemetry.shutdown()
        notifier.close()
        if install_signals:
            sup.remove_signal_handlers()
            if reloader is not None:
                reloader.remove_signal_handler()
    if killed:  # their requests in progress were cut off: a supervisor should see that
        log.error("drain_incomplete", killed=killed,
                  drain_timeout_s=daemon.config.controller.drain_timeout)
    log.info("daemon_stopped", failure=sup.failure, killed=len(killed))
    return EXIT_FAILED if sup.failure or killed else EXIT_OK


def _systemd_notifier(interval_s: float) -> Notifier:
    """The ``sd_notify`` channel (a no-op outside ``Type=notify``); warns when the unit's
    ``WatchdogSec`` is shorter than two ticks, which would kill a healthy daemon."""
    notifier = Notifier.from_environment()
    watchdog_s = watchdog_interval_s()
    if notifier.enabled and watchdog_s is not None and watchdog_s < 2 * interval_s:
        log.warning("watchdog_too_short", watchdog_s=watchdog_s, interval_s=interval_s,
                    hint="set WatchdogSec to at least 3 x controller.interval")
    return notifier


def _each_tick(notifier: Notifier, recorder: TraceRecorder | None,
               ) -> Callable[[list[PoolTick]], None]:
    """What follows every tick: the ``sd_notify`` watchdog and status, then ``--record``."""
    def on_tick(results: list[PoolTick]) -> None:
        notifier.on_tick(results)
        if recorder is not None:
            recorder.on_tick(results)
    return on_tick
