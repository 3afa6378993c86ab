"""The ``sla`` policy: Erlang sizing, estimators, backlog, look-ahead, burst and scale-in."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.erlang import min_servers, wait_tail
from policies.sla import SlaParams, SlaPolicy, SlaState
from tests.test_policies_builtin import POOL, ctx


def run(
    policy: SlaPolicy, ticks: list[dict[str, object]]
) -> tuple[int, SlaState, dict[str, object]]:
    state = policy.initial_state()
    desired, terms = 0, {}
    for kwargs in ticks:
        rec, state = policy.recommend(ctx(**kwargs), state)  # type: ignore[arg-type]
        desired, terms = rec.desired, dict(rec.terms)
    return desired, state, terms


def steady(
    rate: float, service_s: float, t_end: float = 600.0, step: float = 5.0, **extra: object
) -> list[dict[str, object]]:
    busy = round(rate * service_s)
    return [
        {"t": t, "arrival": rate, "completion": rate, "in_flight": busy, **extra}
        for t in [i * step for i in range(int(t_end / step) + 1)]
    ]


def test_steady_state_is_the_erlang_c_answer() -> None:
    desired, _, terms = run(SlaPolicy(SlaParams()), steady(5.0, 2.0, running=2))
    c = min_servers(5.0, 0.5, POOL.max_wait_s, 0.01, step=8)
    assert desired == c // 8
    assert terms["mode"] == "erlang"
    assert terms["service_rate"] == pytest.approx(0.5)
    assert wait_tail(desired * 8, 5.0, 0.5, POOL.max_wait_s) <= 0.01


def test_falls_back_to_depth_without_rates() -> None:
    rec, _ = SlaPolicy(SlaParams()).recommend(ctx(depth=20, in_flight=5), SlaState())
    assert rec.desired == 4  # ceil(25 / 8)
    assert rec.terms["mode"] == "fallback"


def test_service_time_parameter_until_completions_are_measured() -> None:
    policy = SlaPolicy(SlaParams(service_time=2.0))
    rec, _ = policy.recommend(ctx(arrival=5.0, completion=None, in_flight=None), SlaState())
    assert rec.terms["service_rate"] == pytest.approx(0.5)
    assert rec.desired == min_servers(5.0, 0.5, 10.0, 0.01, step=8) // 8


def test_service_rate_survives_an_idle_spell() -> None:
    policy = SlaPolicy(SlaParams())
    ticks = steady(5.0, 2.0, t_end=300) + [
        {"t": 300 + 5 * i, "arrival": 0.0, "completion": 0.0, "in_flight": 0} for i in range(1, 60)
    ]
    _, state, _ = run(policy, ticks)
    assert state.completions / state.busy == pytest.approx(0.5)


def test_backlog_near_its_deadline_adds_capacity() -> None:
    policy = SlaPolicy(SlaParams())
    _, state, _ = run(policy, steady(5.0, 2.0, running=2))
    calm, _ = policy.recommend(
        ctx(t=605, arrival=5.0, completion=5.0, in_flight=10, running=2), state
    )
    late, _ = policy.recommend(
        ctx(t=605, depth=200, wait=8.0, arrival=5.0, completion=5.0, in_flight=8, running=1), state
    )
    assert late.desired > calm.desired
    assert late.terms["backlog_slots"] > late.terms["erlang_slots"]


def test_booting_capacity_is_credited_against_the_backlog() -> None:
    policy = SlaPolicy(SlaParams())
    _, state, _ = run(policy, steady(5.0, 2.0, running=2))
    kwargs = {
        "t": 605,
        "depth": 300,
        "wait": 4.0,
        "arrival": 5.0,
        "completion": 5.0,
        "in_flight": 8,
    }
    bare, _ = policy.recommend(ctx(**kwargs, running=1), state)
    helped, _ = policy.recommend(ctx(**kwargs, running=1, booting=6), state)
    assert helped.desired < bare.desired


def test_rising_trend_is_met_one_boot_ahead() -> None:
    ramp = [
        {
            "t": 5.0 * i,
            "arrival": 1.0 + 0.02 * 5 * i,
            "completion": 1.0,
            "in_flight": 2,
            "running": 3,
        }
        for i in range(241)
    ]
    final = ramp[-1]["arrival"]
    assert isinstance(final, float)
    ahead, _, terms = run(SlaPolicy(SlaParams(trend_window=300)), ramp)
    flat, _, flat_terms = run(
        SlaPolicy(SlaParams(trend_window=300)), [{**tick, "arrival": final} for tick in ramp]
    )
    # The load rises by 0.04 erlangs/s: one boot ahead is ~7 erlangs more than now, which
    # the slots show even where rounding to 8-slot instances hides it.
    assert ahead >= flat
    assert int(terms["erlang_slots"]) > int(flat_terms["erlang_slots"])  # type: ignore[arg-type]
    assert float(terms["arrival_rate"]) > final  # type: ignore[arg-type]


def test_burst_never_shrinks_until_its_window_passes() -> None:
    policy = SlaPolicy(SlaParams(burst_window=60.0))
    _, state, _ = run(policy, steady(1.0, 2.0, running=1))
    surge, state = policy.recommend(
        ctx(t=605, arrival=30.0, completion=1.0, in_flight=2, running=1), state
    )
    assert surge.terms["mode"] == "burst"
    ordered = {"running": 1, "booting": surge.desired - 1}  # the fleet follows the surge
    held, state = policy.recommend(
        ctx(t=610, arrival=1.0, completion=1.0, in_flight=2, **ordered), state
    )
    assert held.desired >= surge.desired
    later = state
    for t in range(615, 700, 5):
        rec, later = policy.recommend(
            ctx(t=t, arrival=1.0, completion=1.0, in_flight=2, **ordered), later
        )
    assert rec.terms["mode"] == "erlang"
    assert rec.desired < surge.desired


def test_capacity_already_booting_does_not_trigger_a_burst() -> None:
    policy = SlaPolicy(SlaParams())
    _, state, _ = run(policy, steady(1.0, 2.0, running=1))
    rec, _ = policy.recommend(
        ctx(t=605, arrival=30.0, completion=1.0, in_flight=2, running=1, booting=20), state
    )
    assert rec.terms["mode"] == "erlang"


def test_scale_in_keeps_a_margin() -> None:
    policy = SlaPolicy(SlaParams(scale_in_margin=0.5))
    plain = SlaPolicy(SlaParams(scale_in_margin=0.0))
    ticks = steady(20.0, 2.0, running=30)
    assert run(policy, ticks)[0] > run(plain, ticks)[0]


def test_a_repeated_time_does_not_move_the_estimators() -> None:
    policy = SlaPolicy(SlaParams())
    _, state, _ = run(policy, steady(5.0, 2.0, t_end=100))
    _, again = policy.recommend(ctx(t=100, arrival=50.0, completion=5.0, in_flight=10), state)
    assert again._replace(burst_until=state.burst_until, burst_floor=state.burst_floor) == state


def test_large_pool_sizes_quickly_and_within_max() -> None:
    big = replace(POOL, max_instances=2_000)
    policy = SlaPolicy(SlaParams())
    rec, _ = policy.recommend(
        ctx(arrival=4_000.0, completion=4_000.0, in_flight=8_000, pool=big), SlaState()
    )
    c = rec.desired * 8
    assert 8_000 < c < 8_000 + 4 * math.sqrt(8_000) + 8
    assert wait_tail(c, 4_000.0, 0.5, 10.0) <= 0.01


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.01, 200.0), service_s=st.floats(0.1, 20.0), running=st.integers(0, 100))
def test_steady_sizing_meets_the_sla_unless_capped(
    rate: float, service_s: float, running: int
) -> None:
    busy = max(1, round(rate * service_s))
    rec, _ = SlaPolicy(SlaParams()).recommend(
        ctx(arrival=rate, completion=busy / service_s, in_flight=busy, running=running), SlaState()
    )
    if rec.desired < POOL.max_instances:
        assert wait_tail(rec.desired * 8, rate, 1 / service_s, POOL.max_wait_s) <= 0.01 * (1 + 1e-9)


def test_bursty_arrivals_get_more_headroom_than_poisson_at_the_same_mean() -> None:
    smooth = steady(5.0, 1.0, running=2)
    bursty = [{**tick, "arrival": 25.0 if i % 5 == 0 else 0.0} for i, tick in enumerate(smooth)]
    calm, _, calm_terms = run(SlaPolicy(SlaParams()), smooth)
    peaky, _, peaky_terms = run(SlaPolicy(SlaParams(burst_ratio=100)), bursty)
    assert float(peaky_terms["dispersion"]) > 10 * float(calm_terms["dispersion"])  # type: ignore[arg-type]
    assert peaky > calm
