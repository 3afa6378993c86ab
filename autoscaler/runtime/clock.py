"""The daemon's clock: the event loop's time, so every window follows the loop that sleeps."""

from __future__ import annotations

import asyncio
import time

_EPOCH_OFFSET = time.time() - time.monotonic()
"""Fixed once per process: ``monotonic`` reads the loop's clock shifted onto the wall clock."""


class LoopClock:
    """``monotonic`` is ``loop.time()`` plus a per-process constant that puts it on the wall
    clock's scale at start-up; ``wall`` is ``time.time()`` (producers stamp requests with wall
    time, so queue waits are measured against it).

    Why the shift: persisted controller state holds times of this clock (window samples, the
    ``sla`` policy's estimator times). The bare monotonic clock restarts at boot and differs
    between hosts, so a successor daemon could not read them; shifted once at start-up, it
    still never jumps within a process, and two processes agree to within their wall clocks'
    agreement at their start-ups (not guaranteed beyond that: NTP corrections after start-up
    are not followed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        return loop.time() + _EPOCH_OFFSET

    def wall(self) -> float:
        return time.time()
