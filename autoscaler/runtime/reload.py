"""Hot reload: SIGHUP (or ``autoscaler run --watch-config``) re-reads the config file and swaps
it in between two ticks.

The new file is validated exactly as at start-up (``file:line: field: message``) and wired
(``Daemon.build``, no I/O) *before* anything running is touched. A file that fails either step
changes nothing: the running config stays, every error is logged (``config_reload_failed``) and
``autoscaler_config_reload_failures_total`` counts it. A good file is swapped in under the
loop's ``tick_lock`` (never in the middle of a tick):

* a pool whose block and the interval are unchanged keeps its runtime as it is (controller,
  state, newest applied decision); a changed pool gets a new controller and *keeps* its state
  (guards' windows, and the policy's estimators when the policy's state type is unchanged: a
  different policy kind starts its estimators fresh);
* an added pool starts (its persisted state, if any, is loaded before its first decision);
* a removed pool is no longer managed: nothing resizes its groups any more and its gauges are
  dropped, but its instances are *left as they are* (``pool_removed``, a warning). The one
  exception is the ``local`` provider, whose instances are this daemon's own child processes:
  they stop (with the drain timeout) when their account's client is rebuilt or retired;
* a provider account whose settings or set of groups changed is rebuilt: a new client starts
  at the next tick, the old one's actuators are stopped and it is closed in the background;
  unchanged accounts keep their client, actuators and in-flight calls;
* queue samplers are rebuilt (their connections reopen; a sample that fails right after a
  reload skips that pool for the tick instead of reusing a stale copy); they start from the
  old ones' counter readings for pools whose queue block is unchanged, so rates are measured
  from the first tick after the reload (``carry_baselines``);
* the cross-pool steps (pauses, budgets, the attainment estimate) and the gate that honours
  pauses are rebuilt from the new file; kept actuators ask the new gate from their next
  resize. Their metrics are registered again (``ReloadableRegistry.replacing``): a rebuilt
  counter starts from 0, and a budget's month-to-date spend resumes from the state store.

Settings that only take effect at a restart (``metrics_address``, ``leader_election``,
``log_level``) keep their running values; a reload that changes them says so
(``config_reload_needs_restart``). A SIGHUP always reloads (``${file:}`` secrets may have
changed under an unchanged file); the watch polls the file's size, mtime and inode every
``poll_s`` and reloads when its SHA-256 differs from the running or the last rejected one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge

from autoscaler.config.models import Config, parse_config
from autoscaler.config.providers import managed_group
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.ports.provider import ManagedGroup
from autoscaler.ports.source import QueueSampler
from autoscaler.ports.telemetry import Telemetry
from autoscaler.registry import Registry
from autoscaler.runtime.accounts import AccountRuntime
from autoscaler.runtime.carryover import baselines_of, resume_baselines
from autoscaler.runtime.leader import LeaderGate
from autoscaler.runtime.loop import ControlLoop, PoolRuntime
from autoscaler.runtime.metrics import PrometheusTelemetry, ReloadableRegistry

log = structlog.get_logger("autoscaler.runtime")

RESTART_ONLY = ("metrics_address", "leader_election", "log_level")
"""Controller settings a reload cannot apply (a bound socket, a running lease, the logger)."""

ACTUATOR_STOP_S = 5.0
"""How long a retired group's actuator gets to finish a resize in progress."""


class Reloadable(Protocol):
    """What a reload swaps parts of: ``autoscaler.runtime.app.Daemon``."""

    config: Config
    loop: ControlLoop
    samplers: list[QueueSampler]
    extensions: Any
    """The cross-pool steps and the pause gate (``autoscaler.runtime.extensions``), or None."""


Build = Callable[[Config], Reloadable]
"""Wires a config the way the running daemon was wired (its clock, telemetry and gate)."""


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    errors: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()


class ReloadMetrics:
    def __init__(self, telemetry: PrometheusTelemetry) -> None:
        r = telemetry.registry
        self.failures = Counter("autoscaler_config_reload_failures",
                                "Reloads rejected (invalid file or wiring): the running config "
                                "stayed", registry=r)
        self.successes = Counter("autoscaler_config_reloads",
                                 "Reloads applied between ticks", registry=r)
        self.last_success = Gauge("autoscaler_config_last_reload_success_timestamp_seconds",
                                  "Wall time of the last applied reload (0: none since start)",
                                  registry=r)
        self.info = Gauge("autoscaler_config_info",
                          "1 for the SHA-256 (first 16 hex digits) of the running config file",
                          ["sha256"], registry=r)

    def running(self, digest: str) -> None:
        self.info.clear()
        self.info.labels(digest[:16]).set(1)


def carried_state(state: ControllerState, controller: PoolController) -> ControllerState:
    """A changed pool's state under its new controller: the guards' windows always; the
    policy's estimators when its state is of the type the new policy starts with."""
    fresh = controller.initial_state()
    if type(state.policy) is type(fresh.policy):
        return state
    return replace(fresh, guards=state.guards)


def carry_baselines(old: Sequence[QueueSampler], new: Sequence[QueueSampler],
                    old_config: Config, config: Config) -> None:
    """The new samplers start from the old ones' counter readings for pools whose queue block
    did not change, so the first tick after a reload has rates (a changed queue's counters
    are other counters: its baselines start afresh)."""
    blocks = {p.name: p.queue for p in config.pools}
    same = {p.name for p in old_config.pools if blocks.get(p.name) == p.queue}
    saved = {name: b for name, b in baselines_of(old).items() if name in same}
    resume_baselines(new, saved)


def _members(config: Config) -> dict[str, list[ManagedGroup]]:
    members: dict[str, list[ManagedGroup]] = defaultdict(list)
    for pool in config.pools:
        for group in pool.groups:
            members[group.provider].append(managed_group(pool, group))
    return dict(members)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConfigReloader:
    """Reloads ``path`` into ``daemon`` on request (SIGHUP) or when the file changes (watch)."""

    def __init__(
        self,
        daemon: Reloadable,
        path: str | Path,
        build: Build,
        *,
        telemetry: Telemetry | None = None,
        registries: dict[str, Registry[Any]] | None = None,
        watch: bool = False,
        poll_s: float = 1.0,
        leader: LeaderGate | None = None,
    ) -> None:
        self.daemon = daemon
        self.leader = leader
        """The lease task's gate: its standby retry period follows ``controller.interval``."""
        self.path = Path(path)
        self._build = build
        self._registries = registries
        self.watch = watch
        self.poll_s = poll_s
        self._telemetry = telemetry
        self.metrics = (ReloadMetrics(telemetry) if isinstance(telemetry, PrometheusTelemetry)
                        else None)
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._signature = self._stat()
        self.digest = ""
        with contextlib.suppress(OSError):
            self.digest = _digest(self.path.read_bytes())
        self._rejected = ""
        """SHA-256 of the last file rejected: the watch does not retry it until it changes."""
        self.failures = 0
        self.successes = 0
        if self.metrics is not None:
            self.metrics.running(self.digest)
        self._signal_installed = False

    # ------------------------------------------------------------------ triggers

    def request(self) -> None:
        """Reload at the next opportunity between ticks (the SIGHUP handler)."""
        log.info("signal_received", signal="SIGHUP", action="reload", path=str(self.path))
        self._wake.set()

    def install_signal_handler(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request)
        self._signal_installed = True

    def remove_signal_handler(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def run(self, stop: asyncio.Event) -> None:
        """A root task: wait for a request (or poll the file), reload, until ``stop``."""
        while not stop.is_set():
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED,
                                   timeout=self.poll_s if self.watch else None)
            finally:
                stopping.cancel()
                woken.cancel()
            if stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                await self.reload("signal")
            elif self.watch and (signature := self._stat()) != self._signature:
                self._signature = signature
                await self.reload("watch")

    # ------------------------------------------------------------------ reload

    async def reload(self, trigger: str = "request") -> ReloadResult:
        """Validate the file, wire it, and swap it in between ticks; never raises."""
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except OSError as exc:
            return self._failed(trigger, "", [f"{self.path}: cannot read: "
                                              f"{exc.strerror or type(exc).__name__}"])
        digest = _digest(data)
        if trigger == "watch" and digest in (self.digest, self._rejected):
            return ReloadResult(ok=True)  # touched, not changed (or the same bad file again)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            return self._failed(trigger, digest, [f"{self.path}: not UTF-8 text ({exc.reason} "
                                                  f"at byte {exc.start})"])
        try:
            config = await asyncio.to_thread(parse_config, text, str(self.path),
                                             self._registries)
        except ConfigFileError as exc:
            return self._failed(trigger, digest, list(exc.messages))
        registry = getattr(self._telemetry, "registry", None)
        try:
            with (registry.replacing() if isinstance(registry, ReloadableRegistry)
                  else contextlib.nullcontext()):
                candidate = self._build(config)
        except Exception as exc:  # a provider refused its settings: the same as a bad file
            return self._failed(trigger, digest, [f"{self.path}: {exc}"])
        try:
            async with self.daemon.loop.tick_lock:
                result = await self._swap(config, candidate)
        except Exception as exc:  # a bug here must not stop the daemon; nothing was swapped
            log.error("config_reload_failed", path=str(self.path), trigger=trigger,
                      error=repr(exc), exc_info=exc)
            return self._failed(trigger, digest, [f"{self.path}: {exc!r}"], logged=True)
        self.digest, self._rejected = digest, ""
        self.successes += 1
        if self.metrics is not None:
            self.metrics.successes.inc()
            self.metrics.last_success.set(time.time())
            self.metrics.running(digest)
        log.info("config_reloaded", path=str(self.path), trigger=trigger, sha256=digest[:16],
                 added=list(result.added), removed=list(result.removed),
                 changed=list(result.changed), kept=list(result.kept),
                 interval_s=config.controller.interval)
        return result

    def _failed(self, trigger: str, digest: str, errors: Sequence[str], *,
                logged: bool = False) -> ReloadResult:
        self.failures += 1
        self._rejected = digest
        if self.metrics is not None:
            self.metrics.failures.inc()
        if not logged:
            log.error("config_reload_failed", path=str(self.path), trigger=trigger,
                      errors=list(errors), action="kept the running config")
        return ReloadResult(ok=False, errors=tuple(errors))

    async def _swap(self, config: Config, candidate: Reloadable) -> ReloadResult:
        old_config, loop, new = self.daemon.config, self.daemon.loop, candidate.loop
        same_interval = old_config.controller.interval == config.controller.interval
        old_blocks = {p.name: p for p in old_config.pools}
        old_runtimes = {rt.name: rt for rt in loop.pools}
        pools: list[PoolRuntime] = []
        added, changed, kept = [], [], []
        for rt in new.pools:
            before = old_runtimes.get(rt.name)
            if before is None:
                added.append(rt.name)
                pools.append(rt)
            elif same_interval and old_blocks[rt.name] == config.pool(rt.name):
                kept.append(rt.name)
                pools.append(before)
            else:
                changed.append(rt.name)
                rt.state = carried_state(before.state, rt.controller)
                rt.applied_seq = before.applied_seq
                pools.append(rt)
        removed = [name for name in old_runtimes if name not in {rt.name for rt in pools}]

        old_members, new_members = _members(old_config), _members(config)
        accounts: dict[str, AccountRuntime] = {}
        for name, account in new.accounts.items():
            before_account = loop.accounts.get(name)
            if (before_account is not None and before_account.spec == account.spec
                    and old_members.get(name) == new_members.get(name)):
                accounts[name] = before_account
            else:
                accounts[name] = account
                log.info("account_rebuilt" if before_account else "account_added", account=name,
                         kind=account.spec.kind, groups=[str(g) for g in account.groups])
        retired = [a for name, a in loop.accounts.items() if accounts.get(name) is not a]

        old_owner = {g: a for a in loop.accounts.values() for g in a.groups}
        new_owner = {g: a for a in accounts.values() for g in a.groups}
        for gid in [g for g in loop.actuators if new_owner.get(g) is not old_owner.get(g)]:
            actuator = loop.actuators.pop(gid)
            self._spawn(f"stop-actuator:{gid}", actuator.stop(ACTUATOR_STOP_S))

        persistence = new.persistence
        if persistence is not None:
            first = loop.persistence is not None and not loop.persistence.loaded
            await persistence.load(pools if first else [rt for rt in pools
                                                        if rt.name in added],
                                   holds=loop.unavailability, samplers=new.samplers)
        carry_baselines(loop.samplers, new.samplers, old_config, config)
        old_samplers, old_persistence = list(loop.samplers), loop.persistence
        loop.reconfigure(pools, new.samplers, accounts, interval_s=new.interval_s,
                         cross_pool=new.cross_pool, persistence=persistence, gate=new.gate)
        self.daemon.config = config
        self.daemon.samplers = list(new.samplers)
        if self.leader is not None:
            self.leader.set_retry(config.controller.interval)
        # the cross-pool steps (pauses, budgets) and the gate that honours pauses are the
        # new config's: the old ones are closed (a budget's ledger resumes from the store)
        old_extensions = getattr(self.daemon, "extensions", None)
        self.daemon.extensions = getattr(candidate, "extensions", None)
        if old_extensions is not None and old_extensions is not self.daemon.extensions:
            self._spawn("close-extensions", old_extensions.close())

        drain_s = config.controller.drain_timeout
        for account in retired:
            log.warning("account_retired", account=account.name, kind=account.spec.kind,
                        note="client closed; cloud instances are left as they are, a local "
                             "provider's child processes stop with it")
            self._spawn(f"close-account:{account.name}", self._close_account(account, drain_s))
        for sampler in old_samplers:
            self._spawn("close-sampler", sampler.close())
        if old_persistence is not None:
            self._spawn("close-state-store", old_persistence.close())
        telemetry = self._telemetry
        for name in removed:
            log.warning("pool_removed", pool=name, action="no longer managed",
                        instances="left as they are: a reload never scales a removed pool "
                                  "down (a local provider's instances are this daemon's child "
                                  "processes: they stop with their account's client)")
            if isinstance(telemetry, PrometheusTelemetry):
                telemetry.forget_pool(name)
        if isinstance(telemetry, PrometheusTelemetry):
            telemetry.health.configure(config.controller.interval,
                                       tuple(p.name for p in config.pools))
            telemetry.fleet.configure(config)  # prices, SLA and bounds of the new file
        restart = tuple(f for f in RESTART_ONLY if getattr(old_config.controller, f)
                        != getattr(config.controller, f))
        if restart:
            log.warning("config_reload_needs_restart", fields=list(restart),
                        action="running values kept until the daemon restarts")
        return ReloadResult(ok=True, added=tuple(added), removed=tuple(removed),
                            changed=tuple(changed), kept=tuple(kept), needs_restart=restart)

    @staticmethod
    async def _close_account(account: AccountRuntime, drain_s: float) -> None:
        killed = await account.close(drain_s)
        if killed:
            log.error("drain_incomplete", account=account.name, killed=killed,
                      drain_timeout_s=drain_s)

    def _spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("reload_cleanup_failed", task=task.get_name(), error=repr(exc))

    async def close(self, timeout_s: float) -> None:
        """Wait (bounded) for retired accounts, actuators, samplers and stores to close."""
        pending = list(self._background)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=max(timeout_s, 0.1))
        for task in late:
            log.warning("reload_cleanup_cancelled", task=task.get_name())
            task.cancel()
