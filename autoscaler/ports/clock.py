"""The one clock protocol: the loop's time in the daemon, a simulated clock elsewhere."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds plus wall-clock seconds (for queue timestamps written by producers)."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class ManualClock:
    """A clock that moves only when told: tests and the simulator."""

    def __init__(self, start: float = 0.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = now
