"""The ``local`` account client: instances as OS processes or in-process workers (semantics
in the package docstring, ``autoscaler.providers.local``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from autoscaler.core.model import GroupState, scale_in_key
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import CapacityUnavailable, NotFound, ProviderError
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.ports.source import worker_queue_url
from autoscaler.ports.telemetry import InstanceFailures
from autoscaler.providers.local.output import finish_forwarding, pipes, start_forwarding
from autoscaler.providers.local.settings import LocalSettings, group_problems
from autoscaler.sources.memory import MemoryQueue, MemorySettings, get_queue

LAUNCH_RETRY_S = 60.0
CRASH_GRACE_S = 10.0
"""An instance that exits (not asked to) within this long of its start is a fast failure."""
CRASH_LIMIT = 5
"""Consecutive fast failures after which the group reports unavailable (crash loop)."""
CRASH_BACKOFF_BASE_S = 1.0
CRASH_BACKOFF_MAX_S = 60.0
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None

log = structlog.get_logger("autoscaler.providers.local")


def tied_to_daemon(command: tuple[str, ...], path: str | None) -> tuple[str, ...]:
    """``command`` so that it gets SIGTERM when the daemon dies, where the system allows.

    PR_SET_PDEATHSIG survives the exec of the command; ``setpriv`` sets it without a
    ``preexec_fn`` (unsafe in a process with threads, as the daemon is: the metrics server).
    The program is looked up first (on ``path``, the instance's PATH), so that a missing or
    non-executable one still fails the launch with ``OSError`` rather than as an instance
    that exits at once.
    """
    if SETPRIV is None:
        return command
    program = shutil.which(command[0], path=path)
    if program is None:
        raise FileNotFoundError(f"no executable {command[0]!r} (PATH={path})")
    return (SETPRIV, "--pdeathsig", "TERM", "--", program, *command[1:])


def instance_env(extra: dict[str, str], instance: int, slots: int,
                 queue_url: str | None = None) -> dict[str, str]:
    """An instance's environment: the daemon's, ``AUTOSCALER_QUEUE_URL`` (the URL a worker
    consumes the pool's queue at, ``autoscaler.ports.source.worker_queue_url``: never a
    Prometheus server's; ``autoscaler worker`` reads it when ``--url`` is absent: the
    environment of a process is readable by its user and root only, its argv by every local
    user), the group's ``env``,
    then what the provider says about the instance (its number, and the slots the pool models
    it with)."""
    url = {"AUTOSCALER_QUEUE_URL": queue_url} if queue_url is not None else {}
    return {**os.environ, **url, **extra, "AUTOSCALER_INSTANCE": str(instance),
            "AUTOSCALER_SLOTS": str(slots)}


@dataclass(eq=False)
class _Instance:
    """One instance; ``task`` is its reaper (process) or its body (in-process)."""

    id: int
    started_at: float
    ready_at: float
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    draining: bool = False
    idle: set[asyncio.Task[None]] = field(default_factory=set)
    output: list[asyncio.Task[None]] = field(default_factory=list)


class LocalClient:
    """The one client of a local account: a ``LocalGroup`` per group, all on this machine."""

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        self.account = account.name
        problems = [
            f"group {g.id}: {message}"
            for g in groups for _, message in group_problems(g)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        self.instance_failures = InstanceFailures()
        """Fast failures by (pool, group): the daemon exports them (``ports.telemetry``)."""
        self.groups = {g.id: LocalGroup(g, clock, account.name, self.instance_failures)
                       for g in groups}

    async def start(self) -> None:
        """Nothing to adopt: local instances do not outlive the daemon that started them
        (``tied_to_daemon``), except where ``setpriv`` is missing, which is said here."""
        for group in self.groups.values():
            if group.settings.command is not None and SETPRIV is None:
                log.warning("instances_may_outlive_daemon", group=str(group.id),
                            why="setpriv (util-linux) not found or not Linux")

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        result: dict[GroupId, GroupState | ProviderError] = {}
        for gid in groups:
            group = self.groups.get(gid)
            result[gid] = group.state() if group is not None else NotFound(
                "no such local group", account=self.account, group=str(gid),
                operation="describe")
        return result

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        await self._group(group, "resize").resize(target)

    async def close(self, drain_timeout_s: float) -> None:
        await asyncio.gather(*(g.close(drain_timeout_s) for g in self.groups.values()))

    @property
    def killed_instances(self) -> list[str]:
        """``pool/group/instance`` of every instance that ``close`` had to kill at the drain
        deadline (its request in progress, if any, was cut off): the daemon exits non-zero."""
        return [f"{g.id.pool}/{g.id.group}/{i}" for g in self.groups.values() for i in g.killed]

    def _group(self, gid: GroupId, operation: str) -> LocalGroup:
        group = self.groups.get(gid)
        if group is None:
            raise NotFound("no such local group", account=self.account, group=str(gid),
                           operation=operation)
        return group


class LocalGroup:
    """One local group's instances."""

    def __init__(self, spec: ManagedGroup, clock: Clock, account: str = "local",
                 failures: InstanceFailures | None = None) -> None:
        settings = spec.settings
        if not isinstance(settings, LocalSettings):
            raise TypeError(f"group {spec.id}: local provider settings expected")
        self.id = spec.id
        self.group = spec
        self._failures = failures or InstanceFailures()
        self.account = account
        self.settings = settings
        self._clock = clock
        self._boot_time = spec.boot_time_s
        self._boot_spread = spec.boot_time_spread_s
        self._slots = spec.slots_per_instance
        self._rng = random.Random(f"{spec.id.pool}/{spec.id.group}")
        self._ids = itertools.count(1)
        self._instances: dict[int, _Instance] = {}
        self._spawn_failed_at: float | None = None
        self._spawn_error = ""
        self.fast_failures = 0
        """Consecutive fast failures (reset when an instance outlives ``CRASH_GRACE_S``)."""
        self.fast_failures_total = 0
        """Every fast failure since start: the crash-loop counter (also in the log events)."""
        self._restart_at = 0.0
        self._restart_logged = 0.0
        self.killed: list[int] = []
        """Instances ``close`` killed at the drain deadline, in order."""
        self._queue: MemoryQueue | None = None
        if settings.command is None:
            queue_settings = spec.queue_settings
            assert isinstance(queue_settings, MemorySettings)
            self._queue = get_queue(queue_settings.name)

    def state(self) -> GroupState:
        now = self._clock.monotonic()
        live = [i for i in self._instances.values() if not i.draining]
        if self.fast_failures and any(now - i.started_at >= CRASH_GRACE_S for i in live):
            self.fast_failures = 0  # one instance outlived the grace: the loop is over
        booting = sum(1 for i in live if now < i.ready_at)
        available = self._launches_allowed()
        return GroupState(
            name=self.group.name,
            market=self.group.market,
            desired=len(live),
            booting=booting,
            running=len(live) - booting,
            draining=len(self._instances) - len(live),
            available=available,
            reason="" if available else self._spawn_error,
        )

    async def resize(self, desired: int) -> None:
        if desired < 0:
            raise ValueError(f"group {self.id}: desired must be >= 0, got {desired}")
        live = [i for i in self._instances.values() if not i.draining]
        if desired > len(live) and self._restart_delayed(desired - len(live)):
            return
        for _ in range(desired - len(live)):
            await self._spawn()
        excess = len(live) - desired
        if excess > 0:
            ranked = sorted(live, key=lambda i: scale_in_key(
                self._booting(i), i.ready_at, i.started_at, i.id))
            for inst in ranked[:excess]:
                self._stop(inst)

    async def close(self, drain_timeout_s: float) -> None:
        """SIGTERM everything, wait up to the deadline, then SIGKILL what is left."""
        for inst in list(self._instances.values()):
            self._stop(inst)
        tasks = [i.task for i in self._instances.values() if i.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
            for inst in list(self._instances.values()):
                log.warning("instance_killed", group=self.group.name, instance=inst.id,
                            reason="drain_timeout")
                self.killed.append(inst.id)
                if inst.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        inst.process.kill()
                elif inst.task is not None:
                    inst.task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    # ------------------------------------------------------------------ instances

    def _launches_allowed(self) -> bool:
        """False for ``LAUNCH_RETRY_S`` after a failed start, then true again so the allocator
        sends one more launch here: a group that reports unavailable forever would never be
        tried again, since the allocator gives an unavailable group no new instances."""
        failed_at = self._spawn_failed_at
        return failed_at is None or self._clock.monotonic() - failed_at >= LAUNCH_RETRY_S

    def _restart_delayed(self, wanted: int) -> bool:
        """True while a crash-loop backoff holds launches back (logged once per backoff).

        After ``CRASH_LIMIT`` fast failures in a row the group also reports unavailable for
        ``LAUNCH_RETRY_S`` (``_launches_allowed``), so the loop moves its capacity to the next
        group; a launch asked for anyway is refused as ``CapacityUnavailable``."""
        now = self._clock.monotonic()
        if not self._launches_allowed():
            raise CapacityUnavailable(self._spawn_error, account=self.account,
                                      group=str(self.id), operation="resize")
        if now >= self._restart_at:
            return False
        if self._restart_logged != self._restart_at:
            self._restart_logged = self._restart_at
            log.warning("instance_restart_delayed", group=self.group.name, wanted=wanted,
                        retry_in_s=round(self._restart_at - now, 3),
                        fast_failures=self.fast_failures,
                        fast_failures_total=self.fast_failures_total)
        return True

    def _exited(self, inst: _Instance, detail: str) -> None:
        """An instance exited on its own: within ``CRASH_GRACE_S`` of its start it is a fast
        failure, which delays the next launch by a jittered exponential backoff
        (``CRASH_BACKOFF_BASE_S * 2**(n-1)``, at most ``CRASH_BACKOFF_MAX_S``, times 0.5-1.5)."""
        now = self._clock.monotonic()
        if now - inst.started_at >= CRASH_GRACE_S:
            self.fast_failures = 0
            return
        self.fast_failures += 1
        self.fast_failures_total += 1
        self._failures.record(self.id.pool, self.id.group)
        n = self.fast_failures
        backoff = min(CRASH_BACKOFF_MAX_S, CRASH_BACKOFF_BASE_S * 2 ** (n - 1))
        backoff *= self._rng.uniform(0.5, 1.5)
        self._restart_at = now + backoff
        log.warning("instance_crash_loop", group=self.group.name, instance=inst.id,
                    fast_failures=n, fast_failures_total=self.fast_failures_total,
                    backoff_s=round(backoff, 3), detail=detail)
        if n >= CRASH_LIMIT:
            self._spawn_failed_at = now
            self._spawn_error = (f"crash loop: {n} instances exited within {CRASH_GRACE_S:g} s "
                                 f"of start ({detail})")
            log.error("group_crash_looping", group=self.group.name, fast_failures=n,
                      unavailable_for_s=LAUNCH_RETRY_S, reason=self._spawn_error)

    def _booting(self, inst: _Instance) -> bool:
        return self._clock.monotonic() < inst.ready_at

    def _boot_delay(self) -> float:
        if self._boot_spread <= 0:
            return self._boot_time
        return max(0.0, self._boot_time + self._rng.uniform(-self._boot_spread, self._boot_spread))

    async def _spawn(self) -> None:
        now = self._clock.monotonic()
        inst = _Instance(id=next(self._ids), started_at=now, ready_at=now + self._boot_delay())
        if self.settings.command is None:
            inst.task = asyncio.create_task(
                self._in_process(inst), name=f"local:{self.group.name}:{inst.id}"
            )
            self._instances[inst.id] = inst
            self._spawn_failed_at = None
            log.info("instance_started", group=self.group.name, instance=inst.id, mode="task")
            return
        command = self.settings.command
        env = instance_env(self.settings.env, inst.id, self._slots,
                           worker_queue_url(self.group.queue_settings))
        sink = pipes(self.settings.output)
        try:
            inst.process = await asyncio.create_subprocess_exec(
                *tied_to_daemon(command, env.get("PATH")),
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
            )
        except OSError as exc:
            self._spawn_failed_at = self._clock.monotonic()
            self._spawn_error = f"cannot start {command[0]!r}: {exc}"
            raise CapacityUnavailable(
                self._spawn_error, account=self.account, group=str(self.id), operation="resize"
            ) from exc
        self._spawn_failed_at = None
        self._instances[inst.id] = inst
        inst.output = start_forwarding(inst.process, group=self.group.name, instance=inst.id)
        inst.task = asyncio.create_task(
            self._reap(inst, inst.process), name=f"local:{self.group.name}:{inst.id}"
        )
        log.info("instance_started", group=self.group.name, instance=inst.id,
                 pid=inst.process.pid, mode="process")

    def _stop(self, inst: _Instance) -> None:
        if inst.draining:
            return
        inst.draining = True
        log.info("instance_stopping", group=self.group.name, instance=inst.id)
        if inst.process is not None:
            if inst.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    inst.process.send_signal(signal.SIGTERM)
        else:
            for consumer in inst.idle:
                consumer.cancel()
            if inst.task is not None and self._booting(inst):
                inst.task.cancel()  # still in its boot sleep: nothing to finish

    async def _reap(self, inst: _Instance, process: asyncio.subprocess.Process) -> None:
        try:
            returncode = await process.wait()
        finally:
            self._instances.pop(inst.id, None)
        await finish_forwarding(inst.output)  # its last lines, before the event of its exit
        if inst.draining:
            log.info("instance_stopped", group=self.group.name, instance=inst.id,
                     returncode=returncode)
        else:
            log.warning("instance_exited", group=self.group.name, instance=inst.id,
                        pid=process.pid, returncode=returncode)
            self._exited(inst, f"returncode {returncode}")

    # ------------------------------------------------------------------ in-process workers

    async def _in_process(self, inst: _Instance) -> None:
        """Boot, then run ``slots_per_instance`` consumers until drained."""
        try:
            while not inst.draining and (left := inst.ready_at - self._clock.monotonic()) > 0:
                await asyncio.sleep(left)
            if not inst.draining:
                consumers = [asyncio.create_task(self._consume(inst)) for _ in range(self._slots)]
                try:
                    await asyncio.gather(*consumers)
                finally:
                    for consumer in consumers:
                        consumer.cancel()
        except asyncio.CancelledError:
            if not inst.draining:
                raise
        except Exception as exc:
            log.warning("instance_exited", group=self.group.name, instance=inst.id,
                        error=repr(exc))
            self._exited(inst, repr(exc))
            return
        finally:
            self._instances.pop(inst.id, None)
        log.info("instance_stopped", group=self.group.name, instance=inst.id)

    async def _consume(self, inst: _Instance) -> None:
        assert self._queue is not None
        queue = self._queue
        me = asyncio.current_task()
        assert me is not None
        while not inst.draining:
            inst.idle.add(me)
            try:
                item = await queue.take(self._clock)
            except asyncio.CancelledError:
                if inst.draining:
                    return
                raise
            finally:
                inst.idle.discard(me)
            try:
                await asyncio.sleep(item.service_s)
            except asyncio.CancelledError:
                queue.requeue(item)  # killed past the drain deadline: give the request back
                raise
            queue.complete(item)
