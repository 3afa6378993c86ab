"""The ``sla`` policy's headroom: how much the offered load grows within one boot, learned online.

Capacity ordered now serves from one boot (plus a tick) later, so the fleet must already hold
the load that arrives within that horizon. Traffic that steps (a client switching on, a batch
job) cannot be extrapolated from its trend, but how much it *tends* to grow within a horizon
can be learned from its own recent history:

* Every ``(boot + interval) / SAMPLES_PER_HORIZON`` seconds the current offered load a0 is
  recorded; once its horizon has passed, its growth ``g = max(a over the horizon) / a0 - 1``
  (at least 0) goes into a histogram of growths (bins of ``BIN_WIDTH``) whose old samples fade
  over ``growth_window`` seconds.
* The headroom is the histogram's ``1 - p`` quantile: the growth exceeded in a share p of
  horizons, sized as ``a * (1 + headroom)``. A horizon whose growth exceeds the headroom goes
  late for about the rest of a boot, so the share of requests that go late is about p times
  the share of that horizon's requests that queue; p starts at ``growth_share`` x the miss
  budget.
* **Feedback**: the measured miss share over ``feedback_window`` moves p (in log space, by
  ``(1 - m/e)`` per window, clipped to [``SURPLUS``, 3]): sustained misses lower p (more
  headroom), down to ``exp(-TIGHTEN_RANGE)`` (0.01x) its start value; sustained surplus
  raises it (less headroom), up to ``RELAX_LIMIT`` (10x). Surplus relaxes four times slower
  than a 2x miss tightens: misses come from a few large steps hours apart, and hours without
  one are no evidence that the next will be small (relaxing at full speed left no headroom
  on the deepseek-r1 day when its +76 % step came). The relaxation stops at a tenth of the
  horizons exceeding the headroom: beyond that the "headroom" is a typical hour's growth,
  not its tail, and the first step after a calm spell meets a fleet with none (up to 100x,
  as before, the held-out variants of the shared days missed 99 % in 5 of 33 cells, 3 with
  the limit; see the README).

What it does not guarantee: the quantile describes the recent past; a step larger than any in
the window still goes late for a boot. Growth is measured on the estimated load, so its noise
shows as a few percent of growth on small pools. The histogram is coarse (``BIN_WIDTH``) and
its top bin holds every growth beyond ``BINS * BIN_WIDTH``. No time-of-day memory: a daily
pattern is learned only as far as it shows in the last ``growth_window``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SAMPLES_PER_HORIZON = 4
BIN_WIDTH = 0.025  # growth histogram bins: 2.5 % of the load
BINS = 80  # up to +200 %
TIGHTEN_RANGE = 4.6  # misses move p down to exp(-4.6) (0.01x) of its start value
RELAX_LIMIT = math.log(10.0)  # surplus moves p up to 10x its start value (a tenth of horizons)
MAX_P = 0.5
SURPLUS = -0.25  # relax 4x slower than a sustained 2x miss tightens: calm hours are not safety


class GrowthState(NamedTuple):
    """Pending horizons, the growth histogram and the feedback, all keyed to ``obs.time``."""

    next_at: float = -math.inf  # time of the next load sample
    pending: tuple[tuple[float, float, float], ...] = ()  # (time, base, peak since) per sample
    peak: float = 0.0  # highest load since the last sample
    held: float = 0.0  # highest load of the pending samples' spans (about one horizon back)
    hist: tuple[float, ...] = ()
    total: float = 0.0
    headroom: float = 0.0
    late: float = 0.0  # requests late since the last sample (count)
    offered: float = 0.0  # requests arrived since the last sample (count)
    fb_late: float = 0.0  # their time-decayed sums over feedback_window
    fb_offered: float = 0.0
    log_p: float = 0.0  # feedback: log of p's multiplier


class Growth:
    """Advances a ``GrowthState``; constants are plain attributes (it runs every tick)."""

    def __init__(self, *, growth_window: float, feedback_window: float, share: float) -> None:
        self._growth_window = growth_window
        self._feedback_window = feedback_window
        self._share = share

    def tick(
        self,
        g: GrowthState,
        now: float,
        load: float,
        late: float,
        offered: float,
        ahead: float,
        miss_budget: float,
    ) -> GrowthState:
        """Fold one tick in: ``late``/``offered`` are the tick's late and arrived requests.

        Cheap except every ``ahead / SAMPLES_PER_HORIZON`` seconds, when a sample is taken,
        finished horizons enter the histogram and the headroom is recomputed."""
        peak = g.peak if g.peak > load else load
        if now < g.next_at:
            return g._replace(peak=peak, late=g.late + late, offered=g.offered + offered)
        held = peak
        step = ahead / SAMPLES_PER_HORIZON
        first = g.next_at == -math.inf
        # Fades and feedback run on the time since the last sample (ticks need not fall on
        # the sample grid); the newest pending entry is always the last sample.
        elapsed = now - g.pending[-1][0] if g.pending else step
        hist = list(g.hist) if g.hist else [0.0] * BINS
        total = g.total
        if not first:
            fade = math.exp(-elapsed / self._growth_window)
            added = False
            kept: list[tuple[float, float, float]] = []
            for t0, a0, top in g.pending:
                top = top if top > peak else peak
                if now - t0 >= ahead:
                    if not added:
                        hist = [h * fade for h in hist]
                        total *= fade
                        added = True
                    growth = top / a0 - 1.0 if a0 > 1e-9 else 0.0
                    i = int(growth / BIN_WIDTH) if growth > 0.0 else 0
                    hist[i if i < BINS else BINS - 1] += 1.0
                    total += 1.0
                else:
                    kept.append((t0, a0, top))
                    held = held if held > top else top
            pending = tuple(kept)
        else:
            pending = ()
        pending += ((now, held, load),)
        fb_fade = 0.0 if first else math.exp(-elapsed / self._feedback_window)
        fb_late = g.fb_late * fb_fade + g.late + late
        fb_offered = g.fb_offered * fb_fade + g.offered + offered
        log_p = g.log_p
        if not first and fb_offered > 0.0:
            error = fb_late / (fb_offered * miss_budget) - 1.0  # > 0: more late than allowed
            error = error if error < 3.0 else 3.0
            error = error if error > SURPLUS else SURPLUS
            log_p -= error * elapsed / self._feedback_window
            log_p = RELAX_LIMIT if log_p > RELAX_LIMIT else log_p
            log_p = -TIGHTEN_RANGE if log_p < -TIGHTEN_RANGE else log_p
        p = self._share * miss_budget * math.exp(log_p)
        headroom = quantile(hist, total, p if p < MAX_P else MAX_P)
        return GrowthState(
            now + step,
            pending,
            load,
            held,
            tuple(hist),
            total,
            headroom,
            0.0,
            0.0,
            fb_late,
            fb_offered,
            log_p,
        )

    @staticmethod
    def held(g: GrowthState) -> float:
        """The highest load of about the last horizon: what the headroom is added to."""
        return g.held if g.held > g.peak else g.peak


def quantile(hist: list[float], total: float, p: float) -> float:
    """The growth exceeded in a share ``p`` of the samples (the upper edge of its bin)."""
    if total <= 0.0:
        return 0.0
    beyond, allowed = 0.0, p * total
    for i in range(len(hist) - 1, -1, -1):
        beyond += hist[i]
        if beyond > allowed:
            # In the top bin, growth has no bound: bursts from near idle, not a level that
            # steps; the burst mode and the dispersion margin size those.
            return (i + 1) * BIN_WIDTH if 0 < i < len(hist) - 1 else 0.0
    return 0.0
