"""Guards written once and wrapped around every policy: HPA ``behavior`` on an injected clock.

A third-party policy gets all of this for free. The order per tick follows the HPA controller
(``normalizeDesiredReplicasWithBehaviors``):

1. **Stabilization.** The raw recommendation joins two windows. Scale-down acts on the
   *highest* recommendation of the last ``scale_down.stabilization_window`` seconds, scale-up on
   the *lowest* of the last ``scale_up.stabilization_window`` seconds:
   ``stabilized = clamp(current, lowest_up_window, highest_down_window)``.
2. **Rate rules.** For each rule, the count at the start of its period is
   ``current - added_in_period + removed_in_period``; a ``pods`` rule allows ``start ± value``,
   a ``percent`` rule ``⌈start·(1 + v/100)⌉`` up (at least +1, so a percent rule can leave zero)
   or ``⌊start·(1 - v/100)⌋`` down. ``select: max`` takes the rule allowing the largest change,
   ``min`` the smallest, ``disabled`` forbids the direction; no rules means no limit.
3. **Scale to zero** only after no demand (nothing waiting, in flight or arriving) for
   ``scale_to_zero_after`` seconds; until then the last instance stays.
4. **Stale observation → never scale in**: the count holds (scale-up is still allowed, since
   acting late on a surge is the costly mistake).
5. **Bounds** ``[capacity.min, capacity.max]`` last, and hard: they override the rate rules (a
   lowered ``max`` is a budget decision that takes effect at once).

Every window is seconds on ``obs.time``, never a tick count, so a late loop does not stretch
it. State is an immutable ``GuardState`` of tuples, pruned to the windows: the stabilization
windows keep only monotone candidates (a sample that a newer, larger one dominates can never be
the window's maximum again), so their size is bounded by the window, not by uptime.
"""

from __future__ import annotations

from typing import NamedTuple

from autoscaler.config import BehaviorConfig, CapacityConfig, ScalingBehavior
from autoscaler.core.model import Observation, Recommendation, Term

Sample = tuple[float, int]
"""``(obs.time, value)``: a recommendation, or the size of one scaling event."""


class GuardState(NamedTuple):
    """What the guards remember between ticks, all pruned to the configured windows.

    A named tuple of tuples: immutable, comparable, and cheap to build every tick.

    ``highs``: scale-down window candidates, values strictly decreasing (head = window max).
    ``lows``: scale-up window candidates, values strictly increasing (head = window min).
    ``up_events`` / ``down_events``: instances added / removed per decision, for the rules.
    ``last_active``: last ``obs.time`` with demand, for scale-to-zero (``None`` before the first
    tick; the idle window starts at the first tick, since earlier idleness is unknown).
    """

    highs: tuple[Sample, ...] = ()
    lows: tuple[Sample, ...] = ()
    up_events: tuple[Sample, ...] = ()
    down_events: tuple[Sample, ...] = ()
    last_active: float | None = None


class Guarded(NamedTuple):
    """The guarded count, why, the guards' terms and their next state."""

    desired: int
    reason: str
    terms: dict[str, Term]
    state: GuardState


def _push_window(
    samples: tuple[Sample, ...], now: float, value: int, window: float, keep_max: bool
) -> tuple[Sample, ...]:
    """Add ``value`` to a sliding-window extremum, keeping only samples that can still win."""
    cutoff = now - window
    kept = [s for s in samples if s[0] > cutoff]
    if keep_max:
        while kept and kept[-1][1] <= value:
            kept.pop()
    else:
        while kept and kept[-1][1] >= value:
            kept.pop()
    kept.append((now, value))
    return tuple(kept)


def _sum_within(events: tuple[Sample, ...], now: float, period: float) -> int:
    cutoff = now - period
    return sum(v for t, v in events if t > cutoff)


def _prune(events: tuple[Sample, ...], now: float, horizon: float) -> tuple[Sample, ...]:
    cutoff = now - horizon
    if not events or events[0][0] > cutoff:
        return events
    return tuple(e for e in events if e[0] > cutoff)


def _horizon(behavior: ScalingBehavior) -> float:
    return max((r.period for r in behavior.rules), default=0.0)


class Guards:
    """Bounds, HPA-style stabilization and rate rules, scale-to-zero and the stale-data rule."""

    def __init__(self, capacity: CapacityConfig, behavior: BehaviorConfig) -> None:
        self.capacity = capacity
        self.behavior = behavior
        # Both directions' rules read both event lists (the period's start count is
        # current - added + removed), so both are kept for the longest period of either.
        self._horizon = max(_horizon(behavior.scale_up), _horizon(behavior.scale_down))

    def initial_state(self) -> GuardState:
        return GuardState()

    def up_limit(self, current: int, now: float, state: GuardState) -> int | None:
        """Most instances the scale-up rules allow now; ``None`` when unlimited."""
        rules = self.behavior.scale_up
        if rules.select == "disabled":
            return current
        if not rules.rules:
            return None
        proposals = []
        for rule in rules.rules:
            start = (
                current
                - _sum_within(state.up_events, now, rule.period)
                + _sum_within(state.down_events, now, rule.period)
            )
            if rule.type == "pods":
                proposals.append(start + rule.value)
            else:
                proposals.append(max(-(-(start * (100 + rule.value)) // 100), start + 1))
        limit = max(proposals) if rules.select == "max" else min(proposals)
        return max(limit, current)

    def down_limit(self, current: int, now: float, state: GuardState) -> int | None:
        """Fewest instances the scale-down rules allow now; ``None`` when unlimited."""
        rules = self.behavior.scale_down
        if rules.select == "disabled":
            return current
        if not rules.rules:
            return None
        proposals = []
        for rule in rules.rules:
            start = (
                current
                - _sum_within(state.up_events, now, rule.period)
                + _sum_within(state.down_events, now, rule.period)
            )
            if rule.type == "pods":
                proposals.append(start - rule.value)
            else:
                proposals.append(start * (100 - rule.value) // 100)
        limit = min(proposals) if rules.select == "max" else max(proposals)
        return min(limit, current)

    def apply(
        self, obs: Observation, current: int, rec: Recommendation, state: GuardState
    ) -> Guarded:
        now = obs.time
        behavior = self.behavior
        recommended = max(0, rec.desired)
        highs = _push_window(
            state.highs, now, recommended, behavior.scale_down.stabilization_window, True
        )
        lows = _push_window(
            state.lows, now, recommended, behavior.scale_up.stabilization_window, False
        )
        stabilized = min(max(current, lows[0][1]), highs[0][1])
        desired = stabilized
        notes: list[str] = []
        if stabilized != recommended:
            notes.append(f"stabilized to {stabilized}")

        if desired > current:
            limit = self.up_limit(current, now, state)
            if limit is not None and desired > limit:
                desired = limit
                notes.append(f"scale-up limited to {limit}")
        elif desired < current:
            limit = self.down_limit(current, now, state)
            if limit is not None and desired < limit:
                desired = limit
                notes.append(f"scale-down limited to {limit}")

        active = obs.demand > 0 or (obs.arrival_rate or 0.0) > 0.0
        last_active = now if active or state.last_active is None else state.last_active
        if desired == 0 and current > 0 and now - last_active < behavior.scale_to_zero_after:
            desired = 1
            notes.append(f"idle {now - last_active:g}s < {behavior.scale_to_zero_after:g}s")

        if not obs.fresh and desired < current:
            desired = current
            notes.append("stale observation: holding (never scale in on stale data)")

        cap = self.capacity
        if desired > cap.max:
            desired = cap.max
            notes.append(f"capped at max {cap.max}")
        elif desired < cap.min:
            desired = cap.min
            notes.append(f"raised to min {cap.min}")

        up_events = _prune(state.up_events, now, self._horizon)
        down_events = _prune(state.down_events, now, self._horizon)
        if desired > current and self._horizon > 0:
            up_events = (*up_events, (now, desired - current))
        elif desired < current and self._horizon > 0:
            down_events = (*down_events, (now, current - desired))

        reason = rec.reason if not notes else f"{rec.reason}; {'; '.join(notes)}"
        terms: dict[str, Term] = {"recommended": recommended, "stabilized": stabilized}
        return Guarded(
            desired,
            reason,
            terms,
            GuardState(highs, lows, up_events, down_events, last_active),
        )
