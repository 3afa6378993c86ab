"""The daemon's clock: the event loop's time, so every window follows the loop that sleeps."""

from __future__ import annotations

import asyncio
import time


class LoopClock:
    """``monotonic`` is ``loop.time()``; ``wall`` is ``time.time()`` (producers stamp requests
    with wall time, so queue waits are measured against it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        return loop.time()

    def wall(self) -> float:
        return time.time()
