"""Spot preemptions as common random numbers: one Poisson timeline per concurrent-instance
ordinal of a spot group, drawn from the seed, the group's name and the ordinal alone (the
scheme is in ``autoscaler.simulations.fleet``'s docstring; the fleet holds the ordinals).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Preemption:
    """One spot notice: when, in which group, on which ordinal's timeline, to which instance."""

    time: float
    group: str
    ordinal: int
    uid: int


PREEMPTION_STREAM = 0x5EED_50D7
"""Spawn-key tag that keeps preemption timelines apart from every other stream of a seed."""


class EventTimeline:
    """A Poisson process of rate ``rate_per_s`` from t = 0, drawn lazily in fixed-size chunks.

    The sequence depends only on the generator it is given, never on the queries: gaps are
    always drawn ``CHUNK`` at a time and only the current chunk is kept, so memory stays
    bounded however long the run. Queries must not go back in time (the simulated clock
    doesn't), which is what lets the consumed chunks be dropped.
    """

    CHUNK = 32

    def __init__(self, rate_per_s: float, rng: np.random.Generator) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"EventTimeline: rate must be positive, got {rate_per_s}")
        self._mean = 1.0 / rate_per_s
        self._rng = rng
        self._times: list[float] = []  # the current chunk; a plain list: read one at a time
        self._next = 0  # index in ``_times`` of the first event not yet passed
        self._origin = 0.0
        self._asked = -math.inf

    def first_after(self, t: float) -> float:
        """The first event strictly after ``t``."""
        if t < self._asked:
            raise ValueError(f"EventTimeline: query at {t} after one at {self._asked}")
        self._asked = t
        times, i = self._times, self._next
        while True:
            while i < len(times) and times[i] <= t:
                i += 1
            if i < len(times):
                self._next = i
                return times[i]
            gaps = self._rng.exponential(self._mean, self.CHUNK)
            times = (self._origin + np.cumsum(gaps)).tolist()
            self._times, self._origin, i = times, times[-1], 0


class Ordinals:
    """A spot group's preemption timelines, one per ordinal, and who holds which ordinal.

    Holders are kept dense (``0 .. n-1``, see the module docstring); timelines are created on
    first use and never dropped, so their number is the group's peak of exposed instances.
    """

    def __init__(self, rate_per_hour: float, seed: int, group: str) -> None:
        self._rate = rate_per_hour / 3600.0
        self._seed = seed
        self._group_key = zlib.crc32(group.encode())
        self._timelines: list[EventTimeline] = []
        self._holders: list[int] = []  # instance uid per ordinal

    def take(self, uid: int) -> int:
        """Expose one more instance: it gets the next ordinal."""
        k = len(self._holders)
        self._holders.append(uid)
        if k == len(self._timelines):
            key = (PREEMPTION_STREAM, self._group_key, k)
            seq = np.random.SeedSequence(self._seed, spawn_key=key)
            self._timelines.append(EventTimeline(self._rate, np.random.default_rng(seq)))
        return k

    def release(self, k: int) -> int | None:
        """The holder of ``k`` is no longer exposed; returns the uid moved into ``k``, if any."""
        moved = self._holders.pop()
        if k == len(self._holders):
            return None
        self._holders[k] = moved
        return moved

    def next_event(self, k: int, t: float) -> float:
        return self._timelines[k].first_after(t)
