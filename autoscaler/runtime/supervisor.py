"""A supervised task tree: named root tasks, a guard on each, signals that only set a flag.

Modelled on kopf's reactor (every root task is guarded; an unexpected exit stops the operator
instead of leaving a half-alive process) and arq's signal handling (the first SIGTERM/SIGINT asks
for a graceful drain; a second one cancels what is left).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

import structlog

CANCEL_GRACE_S = 5.0
"""How long cancelled root tasks get to unwind after the drain deadline."""

log = structlog.get_logger("autoscaler.runtime")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.failure: str | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._finite: set[str] = set()
        self._signals = 0
        self._installed: list[signal.Signals] = []

    @property
    def tasks(self) -> dict[str, asyncio.Task[Any]]:
        return dict(self._tasks)

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, finite: bool = False
    ) -> asyncio.Task[Any]:
        """Start a root task. ``finite`` tasks may return: that ends the run normally
        (the demo's load generator); any other exit before ``stop`` is a failure."""
        if name in self._tasks:
            raise ValueError(f"a root task named {name!r} already exists")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        if finite:
            self._finite.add(name)
        task.add_done_callback(self._guard)
        return task

    def _guard(self, task: asyncio.Task[Any]) -> None:
        name = task.get_name()
        if task.cancelled():
            if not self.stop.is_set():
                self._fail(name, "cancelled")
            return
        exc = task.exception()
        if exc is not None:
            log.error("root_task_failed", task=name, error=repr(exc), exc_info=exc)
            self._fail(name, repr(exc))
        elif name in self._finite:
            log.info("root_task_finished", task=name)
            self.stop.set()
        elif not self.stop.is_set():
            self._fail(name, "exited unexpectedly")

    def _fail(self, name: str, why: str) -> None:
        log.error("root_task_exited", task=name, reason=why)
        if self.failure is None:
            self.failure = f"{name}: {why}"
        self.stop.set()

    # ------------------------------------------------------------------ signals

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig)
            self._installed.append(sig)

    def remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def on_signal(self, sig: signal.Signals) -> None:
        """First signal: set the flag. Second: cancel every root task now."""
        self._signals += 1
        if self._signals == 1:
            log.info("signal_received", signal=sig.name, action="drain")
            self.stop.set()
            return
        log.warning("signal_received", signal=sig.name, action="cancel")
        for task in self._tasks.values():
            task.cancel()

    # ------------------------------------------------------------------ drain

    async def drain(self, deadline_s: float) -> None:
        """Wait for the root tasks to finish by themselves, then cancel the stragglers."""
        pending = [t for t in self._tasks.values() if not t.done()]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=deadline_s)
            for task in late:
                log.warning("root_task_cancelled", task=task.get_name(), reason="drain_deadline")
                task.cancel()
            if late:
                # Bounded too: a task that swallows its cancellation must not hang shutdown.
                _done, stuck = await asyncio.wait(late, timeout=CANCEL_GRACE_S)
                for task in stuck:
                    log.error("root_task_stuck", task=task.get_name(), reason="ignored_cancel")
