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

**Events count only when applied or seen.** ``apply`` records no scale event: a decision
that was not carried out (dry run, failed resize) must neither slow the next one down through
the rate rules nor delay its retry. The controller calls ``record`` once a resize was actually
made (``PoolController.applied``), and ``observe_fleet`` counts a change of the fleet's desired
size that the controller did not make (another actor, a previous controller, a resize that
only partly went through) as an event at the tick it is first seen. The size of an applied
event is ``desired - current`` as before; the fleet's expected desired total after it is kept,
so a partial resize is corrected by the difference on the next tick.

**Restart safety.** A controller's first tick seeds the scale-down window with the fleet's
current size: whatever a fresh policy recommends, nothing is removed before a full
``scale_down.stabilization_window`` of the controller's own has passed (the scale-up window is
not seeded: acting late on a surge is the costly mistake). And an observation without an
arrival rate never scales in, like a stale one: a policy sizing on one instant of depth is not
a reason to remove capacity. That holds on every such tick once the source has shown that it
reports rates (a restarted sampler's first reading, a counter reset, a missing counter), and
for ``measure_grace_s`` after the controller's first tick before that (a source without
counters never reports a rate, so the hold must end). Neither rule knows the fleet's history;
persisted state (``autoscaler.runtime.persistence``) is what resumes the old windows.

Every window is seconds on ``obs.time``, never a tick count, so a late loop does not stretch
it. State is an immutable ``GuardState`` of tuples, pruned to the windows: the stabilization
windows keep only monotone candidates (a sample that a newer, larger one dominates can never be
the window's maximum again), so their size is bounded by the window, not by uptime.
"""

from __future__ import annotations

from typing import NamedTuple

from autoscaler.core.model import Observation, Recommendation, Term
from autoscaler.core.specs import BehaviorSpec, CapacitySpec, ScalingSpec

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
    ``started``: ``obs.time`` of the controller's first tick (``None`` before it).
    ``measured``: an observation with an arrival rate has been seen.
    ``fleet_desired``: the fleet's desired total the controller expects on its next tick (what
    it saw, or what it asked for once applied); ``None`` before the first tick.
    """

    highs: tuple[Sample, ...] = ()
    lows: tuple[Sample, ...] = ()
    up_events: tuple[Sample, ...] = ()
    down_events: tuple[Sample, ...] = ()
    last_active: float | None = None
    started: float | None = None
    measured: bool = False
    fleet_desired: int | None = None


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
    if not samples or (len(samples) == 1 and samples[0][0] <= cutoff):
        return ((now, value),)  # the common cases: nothing kept (e.g. a zero window)
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
    if not events:
        return 0
    cutoff = now - period
    return sum([v for t, v in events if t > cutoff])


def _prune(events: tuple[Sample, ...], now: float, horizon: float) -> tuple[Sample, ...]:
    cutoff = now - horizon
    if not events or events[0][0] > cutoff:
        return events
    return tuple(e for e in events if e[0] > cutoff)


def _horizon(behavior: ScalingSpec) -> float:
    return max((r.period for r in behavior.rules), default=0.0)


_Rule = tuple[float, bool, int]
"""A rate rule flattened for the hot path: ``(period, is_pods, value)``."""


def _rules(behavior: ScalingSpec) -> tuple[_Rule, ...]:
    return tuple((r.period, r.type == "pods", r.value) for r in behavior.rules)


class Guards:
    """Bounds, HPA-style stabilization and rate rules, scale-to-zero and the stale-data rule.

    The (frozen) configuration is flattened into plain attributes once: ``apply`` runs for
    every pool on every tick, under every policy.
    """

    def __init__(
        self, capacity: CapacitySpec, behavior: BehaviorSpec, *, measure_grace_s: float = 0.0
    ) -> None:
        """``measure_grace_s``: how long after its first tick a controller that has seen no
        arrival rate holds scale-in (a source without counters never reports one, so the hold
        must end; the controller passes two tick intervals: counters need two readings)."""
        self.capacity = capacity
        self.behavior = behavior
        # Both directions' rules read both event lists (the period's start count is
        # current - added + removed), so both are kept for the longest period of either.
        self._horizon = max(_horizon(behavior.scale_up), _horizon(behavior.scale_down))
        self._up_window = behavior.scale_up.stabilization_window
        self._down_window = behavior.scale_down.stabilization_window
        self._up_select = behavior.scale_up.select
        self._down_select = behavior.scale_down.select
        self._up_rules = _rules(behavior.scale_up)
        self._down_rules = _rules(behavior.scale_down)
        self._zero_after = behavior.scale_to_zero_after
        self._min = capacity.min
        self._max = capacity.max
        self._grace = measure_grace_s

    def initial_state(self) -> GuardState:
        return GuardState()

    def observe_fleet(
        self, state: GuardState, now: float, current: int, fleet_desired: int
    ) -> GuardState:
        """Before ``apply``: seed the windows on the first tick, and count a change of the
        fleet's desired total that the controller did not make as an event, once."""
        expected = state.fleet_desired
        if state.started is None:
            highs = ((now, current),) if self._down_window > 0 else state.highs
            return state._replace(highs=highs, started=now, fleet_desired=fleet_desired)
        if expected is None:
            return state._replace(fleet_desired=fleet_desired)
        if expected == fleet_desired:
            return state
        if self._horizon <= 0:
            return state._replace(fleet_desired=fleet_desired)
        if fleet_desired > expected:
            events = (*state.up_events, (now, fleet_desired - expected))
            return state._replace(up_events=events, fleet_desired=fleet_desired)
        events = (*state.down_events, (now, expected - fleet_desired))
        return state._replace(down_events=events, fleet_desired=fleet_desired)

    def record(
        self, state: GuardState, time: float, current: int, desired: int, fleet_desired: int
    ) -> GuardState:
        """A resize to ``desired`` (from ``current``) was carried out at ``time``; the fleet's
        desired total is now expected to read ``fleet_desired``.

        The daemon learns that a resize was accepted asynchronously, so a describe may show the
        new size before the loop records it: ``observe_fleet`` has then counted the change
        already (and expects ``fleet_desired``), and recording it again would count it twice."""
        if state.fleet_desired == fleet_desired:
            return state
        up_events, down_events = state.up_events, state.down_events
        if self._horizon > 0:
            if desired > current:
                up_events = (*up_events, (time, desired - current))
            elif desired < current:
                down_events = (*down_events, (time, current - desired))
        return state._replace(
            up_events=up_events, down_events=down_events, fleet_desired=fleet_desired
        )

    @staticmethod
    def _period_start(current: int, state: GuardState, now: float, period: float) -> int:
        """The count ``period`` seconds ago: current - added + removed within the period."""
        return (
            current
            - _sum_within(state.up_events, now, period)
            + _sum_within(state.down_events, now, period)
        )

    def up_limit(self, current: int, now: float, state: GuardState) -> int | None:
        """Most instances the scale-up rules allow now; ``None`` when unlimited."""
        if self._up_select == "disabled":
            return current
        if not self._up_rules:
            return None
        proposals = []
        last_period, start = None, current
        for period, pods, value in self._up_rules:
            if period != last_period:  # rules usually share a period: count it once
                last_period, start = period, self._period_start(current, state, now, period)
            if pods:
                proposals.append(start + value)
            else:
                grown = -(-(start * (100 + value)) // 100)
                proposals.append(grown if grown > start + 1 else start + 1)
        limit = max(proposals) if self._up_select == "max" else min(proposals)
        return current if current > limit else limit  # max(limit, current)

    def down_limit(self, current: int, now: float, state: GuardState) -> int | None:
        """Fewest instances the scale-down rules allow now; ``None`` when unlimited."""
        if self._down_select == "disabled":
            return current
        if not self._down_rules:
            return None
        proposals = []
        last_period, start = None, current
        for period, pods, value in self._down_rules:
            if period != last_period:
                last_period, start = period, self._period_start(current, state, now, period)
            if pods:
                proposals.append(start - value)
            else:
                proposals.append(start * (100 - value) // 100)
        limit = min(proposals) if self._down_select == "max" else max(proposals)
        return current if current < limit else limit  # min(limit, current)

    def apply(
        self, obs: Observation, current: int, rec: Recommendation, state: GuardState
    ) -> Guarded:
        now = obs.time
        recommended = rec.desired if rec.desired > 0 else 0  # max(0, ...), without a call
        highs = _push_window(state.highs, now, recommended, self._down_window, True)
        lows = _push_window(state.lows, now, recommended, self._up_window, False)
        low, high = lows[0][1], highs[0][1]
        stabilized = low if low > current else current  # clamp(current, low, high)
        stabilized = high if high < stabilized else stabilized
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

        last_active = state.last_active
        # Demand (depth + in-flight, as ``obs.demand``) or arrivals keep the idle clock at zero.
        active = obs.depth + (obs.in_flight or 0) > 0 or (obs.arrival_rate or 0.0) > 0.0
        if active or last_active is None:
            last_active = now
        if desired == 0 and current > 0 and now - last_active < self._zero_after:
            desired = 1
            notes.append(f"idle {now - last_active:g}s < {self._zero_after:g}s")

        if not obs.fresh and desired < current:
            desired = current
            notes.append("stale observation: holding (never scale in on stale data)")

        has_rates = obs.arrival_rate is not None
        started = state.started if state.started is not None else now
        if not has_rates and desired < current and (
            state.measured or now - started < self._grace
        ):
            desired = current
            notes.append("no rates measured: holding")
        measured = state.measured or has_rates

        if desired > self._max:
            desired = self._max
            notes.append(f"capped at max {self._max}")
        elif desired < self._min:
            desired = self._min
            notes.append(f"raised to min {self._min}")

        horizon = self._horizon
        up_events, down_events = state.up_events, state.down_events
        if up_events:
            up_events = _prune(up_events, now, horizon)
        if down_events:
            down_events = _prune(down_events, now, horizon)

        reason = rec.reason if not notes else f"{rec.reason}; {'; '.join(notes)}"
        return Guarded(
            desired,
            reason,
            {"recommended": recommended, "stabilized": stabilized},
            GuardState(
                highs, lows, up_events, down_events, last_active, started, measured,
                state.fleet_desired,
            ),
        )
