"""Counter → rate: the one place that turns successive counter readings into events/second.

Every source (the Redis sampler, the memory queue) and the simulator measure arrivals and
completions as cumulative counters and need the same answers to the same awkward cases:

* the first reading has no rate (``None``: unknown, never zero);
* a counter that went down was reset (a restarted producer, a deleted key, a fresh in-memory
  queue): that tick's rate is unknown and the new value is the next baseline. The increase
  since the reset is not guessed: a lower bound would look like a real drop in traffic;
* a missing reading (no counter configured, a failed round) forgets the baseline, so the next
  reading starts afresh instead of averaging over an unknown gap;
* a reading at the same time or earlier than the baseline keeps the older baseline (a longer
  window next time) and has no rate.

``counter_rate`` is the pure function; ``RateMeter`` keeps the baseline for callers that hold
one per counter.
"""

from __future__ import annotations

Reading = tuple[float, int]
"""``(time in seconds, counter value)``."""


def counter_rate(
    previous: Reading | None, now: float, value: int | None
) -> tuple[float | None, Reading | None]:
    """The rate since ``previous`` and the baseline to keep for the next reading."""
    if value is None:
        return None, None
    if previous is None:
        return None, (now, value)
    then, before = previous
    if now <= then:
        return None, previous
    if value < before:
        return None, (now, value)
    return (value - before) / (now - then), (now, value)


class RateMeter:
    """Events per second from successive readings of one counter (see the module docstring)."""

    __slots__ = ("_previous",)

    def __init__(self) -> None:
        self._previous: Reading | None = None

    def update(self, now: float, value: int | None) -> float | None:
        rate, self._previous = counter_rate(self._previous, now, value)
        return rate
