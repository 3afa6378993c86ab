"""An estimate of SLA attainment from what the daemon samples: the share of requests that start
within ``max_wait`` over a sliding window.

The daemon never sees single requests, only each tick's oldest wait W, depth and arrival rate.
Under FIFO, between two ticks the queue's head moved from the request that arrived at
``t0 - W0`` to the one that arrived at ``t1 - W1``: the requests that arrived in between have
started. How many is read off the arrivals counted back then (the measured arrival rates,
integrated into a cumulative count per tick, kept as long as the oldest wait reaches back), so a
backlog drained after the traffic stopped is still counted at the rate it arrived at. Their waits
went from W0 to W1, taken as linear in between; the share of that range above ``max_wait`` is
late. Requests still waiting longer than ``max_wait`` at the latest tick (those that arrived
between ``t1 - W1`` and ``t1 - max_wait``, at most the depth) will start late whatever happens,
so they count as late now. The estimate is
``1 - late / (started + late still waiting)`` over the ticks of the last ``window_s`` seconds.

What it does not see, and so cannot count: requests that started and finished between two
ticks while the head was young (counted on time, which they were); order other than FIFO
(priorities, a zset scored otherwise); requests reclaimed from a dead worker (their wait
restarts from their enqueue time, which moves the head back: that interval counts nothing).
Without an arrival rate the ticks are weighted equally (a time share, not a request share).
An unknown wait (no ``enqueued_at``) or a stale observation adds nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from autoscaler.core.model import Observation


class AttainmentWindow:
    """The sliding-window estimate for one pool (see the module docstring)."""

    def __init__(self, max_wait_s: float, window_s: float = 600.0,
                 max_history: int = 100_000) -> None:
        if max_wait_s <= 0 or window_s <= 0:
            raise ValueError("max_wait_s and window_s must be > 0")
        self.max_wait_s = max_wait_s
        self.window_s = window_s
        self._ticks: deque[tuple[float, float, float]] = deque()  # (time, started, late)
        self._started = 0.0
        self._late = 0.0
        self._last: tuple[float, float] | None = None  # (time, oldest wait)
        self._late_waiting = 0.0
        self._arrived: deque[tuple[float, float]] = deque(maxlen=max_history)
        """(time, arrivals counted since the first tick): the cumulative arrival curve."""
        self._first_rate = 0.0

    def observe(self, obs: Observation) -> float | None:
        """Fold one tick's observation in; the current estimate (None: nothing to go on)."""
        if not obs.fresh:
            return self.estimate()
        rate = obs.arrival_rate
        self._count_arrivals(obs.time, rate)
        wait = 0.0 if obs.depth == 0 else obs.oldest_wait_s
        if wait is None:
            self._last = None
            return self.estimate()
        wait = max(0.0, wait)
        m = self.max_wait_s
        t = obs.time
        if self._last is not None and t > self._last[0]:
            t0, w0 = self._last
            head0, head1 = t0 - w0, t - wait
            if rate is not None:
                started = max(0.0, self._cumulative(head1) - self._cumulative(head0))
            else:
                started = 1.0 if head1 > head0 else 0.0
            self._push(t, started, started * _share_above(w0, wait, m))
        self._last = (t, wait)
        if wait <= m:
            self._late_waiting = 0.0
        elif rate is not None:
            late = self._cumulative(t - m) - self._cumulative(t - wait)
            self._late_waiting = min(float(obs.depth), max(0.0, late))
        else:
            self._late_waiting = (wait - m) / wait
        self._expire(t, wait)
        return self.estimate()

    def _count_arrivals(self, t: float, rate: float | None) -> None:
        if rate is None:
            return
        if not self._arrived:
            self._arrived.append((t, 0.0))
            self._first_rate = max(0.0, rate)
            return
        last_t, last_n = self._arrived[-1]
        if t > last_t:
            self._arrived.append((t, last_n + max(0.0, rate) * (t - last_t)))

    def _cumulative(self, t: float) -> float:
        """Arrivals counted up to ``t`` (linear between ticks; before the first tick, at the
        first rate seen, since those requests arrived before the daemon was looking)."""
        points = self._arrived
        if not points:
            return 0.0
        first_t, _ = points[0]
        if t <= first_t:
            return -self._first_rate * (first_t - t)
        last_t, last_n = points[-1]
        if t >= last_t:
            return last_n
        i = bisect.bisect_left(points, (t, -math.inf))
        (ta, na), (tb, nb) = points[i - 1], points[i]
        return na + (nb - na) * (t - ta) / (tb - ta)

    def estimate(self) -> float | None:
        total = self._started + self._late_waiting
        if total <= 0:
            return None
        return max(0.0, min(1.0, 1.0 - (self._late + self._late_waiting) / total))

    def _push(self, time: float, started: float, late: float) -> None:
        self._ticks.append((time, started, late))
        self._started += started
        self._late += late

    def _expire(self, now: float, wait: float) -> None:
        while self._ticks and self._ticks[0][0] <= now - self.window_s:
            _, started, late = self._ticks.popleft()
            self._started -= started
            self._late -= late
        if not self._ticks:
            self._started = self._late = 0.0  # no float drift left behind
        # The arrival curve is needed back to the head's arrival (the next tick's span starts
        # there); one point before it is kept to interpolate.
        horizon = now - wait
        while len(self._arrived) > 2 and self._arrived[1][0] <= horizon:
            self._arrived.popleft()


def _share_above(w0: float, w1: float, m: float) -> float:
    """The share of waits, linear from ``w0`` to ``w1``, that exceed ``m``."""
    lo, hi = min(w0, w1), max(w0, w1)
    if hi <= m:
        return 0.0
    if lo > m:
        return 1.0
    return (hi - m) / (hi - lo)
