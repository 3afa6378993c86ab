"""``local``: each instance is one OS process started from the group's ``command``.

Made for a single machine (a workstation with GPUs, the demo, end-to-end tests). Semantics that
matter to the daemon:

- An instance counts as *booting* until ``capacity.boot_time`` has passed on the injected clock,
  then *running*.
- Scale-in sends SIGTERM; the worker finishes its in-flight request and exits, so scale-in never
  loses a request. A draining instance still counts as running until it exits, so ``describe``
  never invites the daemon to start a replacement for capacity that is still busy.
- Victims are chosen booting first (they serve nothing yet), then newest.
- ``desired`` is the number of live (non-draining) instances: one that dies unexpectedly is logged
  as ``instance_exited`` and lowers it, so the next tick's decision calls ``set_desired`` and
  replaces it.
- On Linux, instances are started through ``setpriv --pdeathsig TERM`` (util-linux) when it is
  installed: if the daemon itself dies (SIGKILL, OOM), its instances get SIGTERM and drain
  instead of serving on as orphans that a restarted daemon cannot see and would double.
  Without ``setpriv`` a warning says so when the provider starts.

A pool whose queue kind is ``memory`` may omit ``command``: instances are then in-process asyncio
workers consuming that memory queue, with the same booting and draining semantics (the embedded
default of ``autoscaler demo``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.config.models import GroupConfig, PoolConfig
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import ProviderError
from autoscaler.sources.memory import MemoryQueue, MemorySettings, get_queue

LAUNCH_RETRY_S = 60.0
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


class _Log:
    """structlog (and, through it, rich) loads on the first event, not on import: config
    validation imports this module for ``Settings`` only, and ``autoscaler simulate`` or
    ``validate`` never start an instance."""

    def __getattr__(self, name: str) -> Any:
        import structlog

        return getattr(structlog.get_logger("autoscaler.providers.local"), name)


log = _Log()


class LocalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] | None = Field(
        default=None, min_length=1, description="argv of one instance (no shell)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="added to the environment")
    output: Literal["inherit", "discard"] = Field(
        default="inherit", description="where the instances' stdout/stderr go"
    )


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


class LocalProvider:
    kind = "local"
    Settings = LocalSettings

    def __init__(self, group: GroupConfig, pool: PoolConfig, clock: Clock) -> None:
        settings = group.settings
        if not isinstance(settings, LocalSettings):
            raise TypeError(f"group {group.name!r}: local provider settings expected")
        if settings.command is None and pool.queue.kind != "memory":
            raise ValueError(
                f"pool {pool.name!r}, group {group.name!r}: the local provider needs a `command` "
                f"unless the pool's queue kind is memory (it is {pool.queue.kind!r})"
            )
        self.group = group
        self.pool = pool
        self.settings = settings
        self._clock = clock
        self._boot_time = pool.capacity.boot_time
        self._boot_spread = pool.capacity.boot_time_spread
        self._slots = pool.capacity.slots_per_instance
        self._rng = random.Random(f"{pool.name}/{group.name}")
        self._ids = itertools.count(1)
        self._instances: dict[int, _Instance] = {}
        self._spawn_failed_at: float | None = None
        self._queue: MemoryQueue | None = None
        if settings.command is None:
            queue_settings = pool.queue.settings
            assert isinstance(queue_settings, MemorySettings)
            self._queue = get_queue(queue_settings.name)

    # ------------------------------------------------------------------ protocol

    async def start(self) -> None:
        """Nothing to adopt: local instances do not outlive the daemon that started them
        (``tied_to_daemon``), except where ``setpriv`` is missing, which is said here."""
        if self.settings.command is not None and SETPRIV is None:
            log.warning("instances_may_outlive_daemon", group=self.group.name,
                        why="setpriv (util-linux) not found or not Linux")

    async def describe(self) -> GroupState:
        now = self._clock.monotonic()
        live = [i for i in self._instances.values() if not i.draining]
        booting = sum(1 for i in live if now < i.ready_at)
        return GroupState(
            name=self.group.name,
            market=self.group.market,
            desired=len(live),
            booting=booting,
            running=len(self._instances) - booting,
            available=self._launches_allowed(),
        )

    async def set_desired(self, desired: int) -> None:
        if desired < 0:
            raise ValueError(f"group {self.group.name!r}: desired must be >= 0, got {desired}")
        live = [i for i in self._instances.values() if not i.draining]
        for _ in range(desired - len(live)):
            await self._spawn()
        excess = len(live) - desired
        if excess > 0:
            # Booting first (they serve nothing yet), then newest first.
            ranked = sorted(live, key=lambda i: (not self._booting(i), -i.started_at, -i.id))
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
        env = {**os.environ, **self.settings.env, "AUTOSCALER_INSTANCE": str(inst.id)}
        sink = asyncio.subprocess.DEVNULL if self.settings.output == "discard" else None
        try:
            inst.process = await asyncio.create_subprocess_exec(
                *tied_to_daemon(command, env.get("PATH")),
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
            )
        except OSError as exc:
            self._spawn_failed_at = self._clock.monotonic()
            raise ProviderError(
                self.group.name, "set_desired", f"cannot start {command[0]!r}: {exc}"
            ) from exc
        self._spawn_failed_at = None
        self._instances[inst.id] = inst
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
        if inst.draining:
            log.info("instance_stopped", group=self.group.name, instance=inst.id,
                     returncode=returncode)
        else:
            log.warning("instance_exited", group=self.group.name, instance=inst.id,
                        pid=process.pid, returncode=returncode)

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
