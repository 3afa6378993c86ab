"""HPA ``behavior`` guards on an injected clock: tables for each rule, properties for all."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.config.models import BehaviorConfig, CapacityConfig
from autoscaler.config.to_core import behavior_spec, capacity_spec
from autoscaler.core.guards import Guarded, Guards, GuardState
from autoscaler.core.model import Observation, Recommendation


def guards(min_: int = 0, max_: int = 100, **behavior: Any) -> Guards:
    capacity = CapacityConfig.model_validate({"min": min_, "max": max_})
    return Guards(capacity_spec(capacity), behavior_spec(BehaviorConfig.model_validate(behavior)))


def obs(t: float, depth: int = 1, fresh: bool = True) -> Observation:
    return Observation(time=t, depth=depth, in_flight=0, fresh=fresh)


class Driver:
    """Feeds recommendations at given times; the fleet instantly follows each decision, and
    each change is recorded as applied."""

    def __init__(self, g: Guards, current: int) -> None:
        self.g, self.current, self.state = g, current, g.initial_state()

    def tick(self, t: float, rec: int, depth: int = 1, fresh: bool = True) -> Guarded:
        out = self.g.apply(obs(t, depth, fresh), self.current, Recommendation(rec, "r"), self.state)
        self.state = self.g.record(out.state, t, self.current, out.desired, out.desired)
        self.current = out.desired
        return out


def test_bounds_are_hard() -> None:
    d = Driver(guards(2, 5, scale_up={"rules": []}, scale_down={"stabilization_window": 0}), 3)
    assert d.tick(0, 50).desired == 5
    assert "capped at max 5" in d.tick(1, 50).reason
    assert d.tick(2, 0).desired == 2


def test_scale_down_acts_on_the_highest_recommendation_in_the_window() -> None:
    d = Driver(guards(), 10)
    assert d.tick(0, 10).desired == 10
    assert d.tick(60, 2).desired == 10
    assert d.tick(299, 3).desired == 10
    assert d.tick(300.5, 3).desired == 3  # the 10 at t=0 left the window; 3 > 2 is newer
    assert d.tick(360.5, 1).desired == 3  # still the highest of (60.5, 360.5]
    assert d.tick(600.6, 1).desired == 1


def test_scale_up_stabilization_acts_on_the_lowest() -> None:
    d = Driver(guards(scale_up={"stabilization_window": 30, "rules": []}), 1)
    assert d.tick(0, 1).desired == 1
    assert d.tick(10, 8).desired == 1
    assert d.tick(20, 6).desired == 1
    assert d.tick(31, 7).desired == 6
    assert d.tick(41, 9).desired == 6  # lowest of (11, 41]
    assert d.tick(51, 9).desired == 7


def test_windows_are_seconds_not_ticks() -> None:
    """The same 300 s window whether the loop ticks every second or every 20 s."""
    for interval in (1.0, 20.0):
        d = Driver(guards(), 10)
        t, first_drop = 0.0, None
        d.tick(t, 10)
        while t < 400 and first_drop is None:
            t += interval
            if d.tick(t, 1).desired < 10:
                first_drop = t
        assert first_drop is not None and 300 <= first_drop < 300 + interval


def test_hpa_default_scale_up_rate() -> None:
    """max(4 pods, 100 %) per 15 s, counting from the size at the start of the period."""
    d = Driver(guards(max_=1000), 2)
    assert d.tick(0, 100).desired == 6  # 2 + 4 beats 2 * 2
    assert d.tick(5, 100).desired == 6  # period started at 2: nothing more until t > 15
    assert d.tick(15.5, 100).desired == 12  # 6 * 2 beats 6 + 4
    assert d.tick(31, 100).desired == 24


def test_pods_rule_paces_scale_in() -> None:
    d = Driver(
        guards(
            scale_down={
                "stabilization_window": 0,
                "rules": [{"type": "pods", "value": 1, "period": 60}],
            }
        ),
        10,
    )
    assert d.tick(0, 0).desired == 9
    assert d.tick(30, 0).desired == 9
    assert d.tick(60.5, 0).desired == 8


@pytest.mark.parametrize(("select", "expected"), [("max", 5), ("min", 9), ("disabled", 10)])
def test_select_policy(select: str, expected: int) -> None:
    rules = [
        {"type": "pods", "value": 1, "period": 60},
        {"type": "percent", "value": 50, "period": 60},
    ]
    d = Driver(guards(scale_down={"stabilization_window": 0, "select": select, "rules": rules}), 10)
    assert d.tick(0, 0).desired == expected


def test_percent_rule_can_leave_zero() -> None:
    d = Driver(guards(scale_up={"rules": [{"type": "percent", "value": 100, "period": 60}]}), 0)
    assert d.tick(0, 5).desired == 1


def test_scale_to_zero_waits_for_an_idle_window() -> None:
    d = Driver(guards(scale_down={"stabilization_window": 0}, scale_to_zero_after=120), 1)
    assert d.tick(0, 0, depth=0).desired == 1
    assert d.tick(100, 0, depth=3).desired == 1  # demand: the idle clock restarts
    assert d.tick(219, 0, depth=0).desired == 1
    out = d.tick(220, 0, depth=0)
    assert out.desired == 0
    assert d.tick(300, 0, depth=0).desired == 0


def test_stale_observation_never_scales_in_but_may_scale_up() -> None:
    d = Driver(guards(scale_down={"stabilization_window": 0}), 10)
    out = d.tick(0, 2, fresh=False)
    assert out.desired == 10 and "stale" in out.reason
    assert d.tick(1, 14, fresh=False).desired == 14


def test_scale_down_percent_over_100_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"scale_down.rules\[0\]"):
        BehaviorConfig.model_validate(
            {"scale_down": {"rules": [{"type": "percent", "value": 150, "period": 15}]}}
        )


# --------------------------------------------------------------------------- properties

steps = st.lists(
    st.tuples(st.floats(0.1, 90.0), st.integers(0, 200), st.booleans(), st.integers(0, 3)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, start=st.integers(0, 200), lo=st.integers(0, 5), span=st.integers(1, 60))
def test_desired_always_within_bounds(
    steps: list[tuple[float, int, bool, int]], start: int, lo: int, span: int
) -> None:
    d = Driver(guards(lo, lo + span), start)
    t = 0.0
    for dt, rec, fresh, depth in steps:
        t += dt
        assert lo <= d.tick(t, rec, depth=depth, fresh=fresh).desired <= lo + span


@settings(max_examples=150, deadline=None)
@given(steps=steps, value=st.integers(1, 5), period=st.floats(5.0, 120.0))
def test_scale_in_never_faster_than_the_rule(
    steps: list[tuple[float, int, bool, int]], value: int, period: float
) -> None:
    d = Driver(
        guards(
            max_=200,
            scale_down={
                "stabilization_window": 0,
                "rules": [{"type": "pods", "value": value, "period": period}],
            },
        ),
        100,
    )
    # HPA semantics: a scale-in may go at most ``value`` below the count at the start of the
    # trailing period (the count after the last decision at or before t - period).
    counts: list[tuple[float, int]] = [(-1e9, 100)]
    t = 0.0
    for dt, rec, fresh, depth in steps:
        t += dt
        before = d.current
        after = d.tick(t, rec, depth=depth, fresh=fresh).desired
        start = [count for when, count in counts if not when > t - period][-1]
        if after < before:
            assert after >= start - value
        counts.append((t, after))


@settings(max_examples=150, deadline=None)
@given(steps=steps, current=st.integers(0, 100), rec=st.integers(0, 100))
def test_stale_data_never_scales_in(
    steps: list[tuple[float, int, bool, int]], current: int, rec: int
) -> None:
    g = guards(0, 100, scale_down={"stabilization_window": 0})
    d = Driver(g, 50)
    t = 0.0
    for dt, r, fresh, depth in steps:  # any history first
        t += dt
        d.tick(t, r, depth=depth, fresh=fresh)
    out = g.apply(obs(t + 1, fresh=False), current, Recommendation(rec, "r"), d.state)
    assert out.desired >= current


def test_state_stays_bounded_by_the_windows() -> None:
    d = Driver(guards(max_=1000), 10)
    for i in range(20_000):
        d.tick(float(i), (i * 7919) % 500)
    s: GuardState = d.state
    assert len(s.highs) <= 301 and len(s.lows) <= 1
    assert len(s.up_events) <= 16 and len(s.down_events) <= 16
