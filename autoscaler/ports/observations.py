"""Counting implausible observations, with a rate-limited warning, for any queue source.

A source owns one ``InvalidObservations``; the daemon points its ``sink`` at the telemetry
port's ``record_observation_invalid`` (``autoscaler_observation_invalid_total{pool,reason}``),
so the sources need no telemetry argument. The warning is rate-limited per (pool, reason) with
the count of suppressed repeats, because a bad producer sends the same bad timestamp every tick.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

WARN_EVERY_S = 60.0
"""At most one ``observation_invalid`` warning per pool and reason in this many seconds."""


class InvalidObservations:
    """Counts by (pool, reason); warns at most once per ``warn_every_s`` per pair."""

    def __init__(
        self,
        *,
        warn_every_s: float = WARN_EVERY_S,
        now: Callable[[], float] = monotonic,
    ) -> None:
        self.sink: Callable[[str, str], None] | None = None
        self.counts: dict[tuple[str, str], int] = {}
        self._warn_every_s = warn_every_s
        self._now = now
        self._last_warned: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def record(self, pool: str, reason: str, value: float | None) -> None:
        """One implausible enqueue time ``value`` seen on ``pool`` (None: none could be read)."""
        key = (pool, reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.sink is not None:
            self.sink(pool, reason)
        now = self._now()
        last = self._last_warned.get(key)
        if last is not None and now - last < self._warn_every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last_warned[key] = now
        import structlog  # here: the simulator loads the memory source and must not load logging

        structlog.get_logger(__name__).warning(
            "observation_invalid", pool=pool, reason=reason, enqueued_at=value,
            suppressed=self._suppressed.pop(key, 0),
            effect="oldest wait reported as unknown",
        )
