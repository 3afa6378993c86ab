"""The ``sla`` policy: Erlang sizing, estimators, backlog, look-ahead, burst, scale-in, the error
budget, the load trend, service-time variability and the scale-out tolerance."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.erlang import min_servers, wait_tail
from autoscaler.core.policy import PoolSettings
from autoscaler.policies.sla import SlaParams, SlaPolicy, SlaState
from tests.test_policies_builtin import POOL, ctx


def run(
    policy: SlaPolicy, ticks: list[dict[str, object]], state: SlaState | None = None
) -> tuple[int, SlaState, dict[str, object]]:
    state = policy.initial_state() if state is None else state
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
    surge, state = policy.recommend(  # the queue the one instance cannot start in time
        ctx(t=605, depth=100, wait=3.0, arrival=30.0, completion=1.0, in_flight=8, running=1),
        state,
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


def spike(depth: int) -> dict[str, object]:
    """A tick after ``steady(1.0, 2.0, running=1)``: 30 arrivals per second, ``depth`` queued.

    The instance has 6 free slots and completes 0.5 per slot-second: it starts
    6 + 8 * 0.5 * 10 = 46 requests within max_wait (10 s)."""
    return {"t": 605, "depth": depth, "wait": 1.0, "arrival": 30.0, "completion": 1.0,
            "in_flight": 2, "running": 1}


def test_a_spike_the_running_fleet_absorbs_spends_the_saved_budget_instead() -> None:
    policy = SlaPolicy(SlaParams())
    _, saved, _ = run(policy, steady(1.0, 2.0, running=1))
    assert boost(saved) > 2.5  # over half the boost of 4 saved: two budget windows, no misses
    absorbed, _ = policy.recommend(ctx(**spike(46)), saved)  # type: ignore[arg-type]
    assert absorbed.terms["mode"] == "erlang"
    # Beyond what the instance starts in time, the spike is a burst.
    beyond, _ = policy.recommend(ctx(**spike(47)), saved)  # type: ignore[arg-type]
    assert beyond.terms["mode"] == "burst"
    assert beyond.desired > absorbed.desired


def test_a_saturated_fleet_leaves_a_surge_to_the_budget_only_if_its_lateness_fits() -> None:
    """Every slot busy and a queue of 10: the instance starts S = 8 * 0.5 = 4 a second, so if
    the surge goes on at 30/s until the next tick (5 s), arrivals after x0 = (4 * 10 - 10) /
    (30 - 4) = 1.15 s wait past max_wait (10 s): 30 * (5 - 1.15) = 115 late. The queue alone
    fits what the instance starts within max_wait (40): without the projection the trigger
    was left to the fleet, and the tick phase decided whether the next batch found capacity."""
    policy = SlaPolicy(SlaParams())
    _, saved, _ = run(policy, steady(1.0, 2.0, running=1))
    assert boost(saved) > 2.5
    saturated = {**spike(10), "in_flight": 8}
    rec, _ = policy.recommend(ctx(**saturated), saved)  # type: ignore[arg-type]
    assert rec.terms["mode"] == "burst"
    # One free slot: the same queue starts at once and the rest within max_wait, as before.
    rec, _ = policy.recommend(ctx(**{**saturated, "in_flight": 7}), saved)  # type: ignore[arg-type]
    assert rec.terms["mode"] == "erlang"
    # A loose target's spare budget (half of the ~260 requests over the window) takes 115.
    loose = replace(POOL, target=0.5)
    rec, _ = policy.recommend(ctx(**saturated, pool=loose), saved)  # type: ignore[arg-type]
    assert rec.terms["mode"] == "erlang"


def test_without_a_saved_budget_every_trigger_is_a_burst() -> None:
    # Start-up (nothing saved yet) and a policy that does not spend its budget.
    _, early, _ = run(SlaPolicy(SlaParams()), steady(1.0, 2.0, t_end=60.0, running=1))
    assert boost(early) < 2.5
    rec, _ = SlaPolicy(SlaParams()).recommend(ctx(**{**spike(10), "t": 65}), early)  # type: ignore[arg-type]
    assert rec.terms["mode"] == "burst"
    frugal = SlaPolicy(SlaParams(budget_boost=1.0))
    _, state, _ = run(frugal, steady(1.0, 2.0, running=1))
    rec, _ = frugal.recommend(ctx(**spike(10)), state)  # type: ignore[arg-type]
    assert rec.terms["mode"] == "burst"


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


# --------------------------------------------------------------------------- error budget


def slots_for(rate: float, mu: float, tail: float, pool: PoolSettings = POOL) -> int:
    """The plain M/M/c answer the policy's ``erlang_slots`` must equal for Poisson arrivals."""
    return min_servers(rate, mu, pool.max_wait_s, tail, upper=pool.max_instances * 8)


def boost(state: SlaState, budget_boost: float = 4.0, miss_budget: float = 0.01) -> float:
    """k from the module docstring, evaluated on the policy's own state."""
    used = state.late / (state.offered * miss_budget)
    return 1.0 + (budget_boost - 1.0) * state.seen * max(0.0, 1.0 - used)


# A tight budget for 2 s requests: each factor of the miss budget is worth a slot or two.
TIGHT = replace(POOL, max_wait_s=1.0)


def test_error_budget_starts_at_one() -> None:
    rec, state = SlaPolicy(SlaParams()).recommend(
        ctx(arrival=20.0, completion=20.0, in_flight=40, pool=TIGHT), SlaState()
    )
    assert state.seen == 0.0
    assert rec.terms["erlang_slots"] == slots_for(20.0, 0.5, 0.01, TIGHT)


def test_error_budget_grows_toward_the_boost_without_late_heads() -> None:
    ticks = steady(20.0, 2.0, t_end=3 * 300.0, running=12, pool=TIGHT)  # three budget windows
    _, state, terms = run(SlaPolicy(SlaParams()), ticks)
    k = boost(state)
    assert state.late == 0.0
    assert 3.8 < k < 4.0  # 1 + 3 * (1 - e^-3)
    assert terms["erlang_slots"] == slots_for(20.0, 0.5, 0.01 * k, TIGHT)
    _, _, plain = run(SlaPolicy(SlaParams(budget_boost=1.0)), ticks)
    assert plain["erlang_slots"] == slots_for(20.0, 0.5, 0.01, TIGHT)
    assert terms["erlang_slots"] < plain["erlang_slots"]


def late_ticks(after: float, depth: int, wait: float) -> list[dict[str, object]]:
    """Five budget windows of the same traffic from ``after`` on, ``depth`` waiting behind a
    head at ``wait``: the observed miss share converges to within 1 %."""
    return [
        {**tick, "t": after + 5.0 + float(tick["t"]), "depth": depth, "wait": wait}  # type: ignore[arg-type]
        for tick in steady(20.0, 2.0, t_end=5 * 300.0, running=12, pool=TIGHT)
    ]


def test_error_budget_falls_back_to_one_while_requests_go_late() -> None:
    saved = steady(20.0, 2.0, t_end=3 * 300.0, running=12, pool=TIGHT)
    policy = SlaPolicy(SlaParams())
    _, state, _ = run(policy, saved)
    assert boost(state) > 3.8
    # 200 waiting over a 2 s head: 100 arrived per second, and those of the last second
    # before max_wait (1 s) crossed it during the 5 s tick: 20 late per second, all arrivals.
    _, state, terms = run(policy, late_ticks(900.0, depth=200, wait=2.0), state)
    assert state.late == pytest.approx(state.offered, rel=0.01)
    assert boost(state) == 1.0
    assert terms["erlang_slots"] == slots_for(20.0, 0.5, 0.01, TIGHT)


def test_error_budget_counts_only_the_requests_that_crossed_max_wait() -> None:
    saved = steady(20.0, 2.0, t_end=3 * 300.0, running=12, pool=TIGHT)
    policy = SlaPolicy(SlaParams())
    _, before, _ = run(policy, saved)
    # One request waiting 2 s on every tick: the queue's requests arrive one per 2 s and
    # each waits past max_wait (1 s), 0.5 late per second of 20 arriving. Counting the
    # whole tick's arrivals as late would count forty times as many.
    _, state, _ = run(policy, late_ticks(900.0, depth=1, wait=2.0), before)
    assert state.late == pytest.approx(0.5, rel=0.01)
    assert boost(state) == 1.0


def test_error_budget_counts_the_late_requests_that_started_since_the_last_tick() -> None:
    saved = steady(20.0, 2.0, t_end=3 * 300.0, running=12, pool=TIGHT)
    policy = SlaPolicy(SlaParams())
    _, before, _ = run(policy, saved)
    # A saturated fleet whose queue holds 1.5 s of arrivals on every tick: every request
    # waits 1.5 s, past max_wait (1 s). Only those of the last 0.5 s are still queued at a
    # tick; the ones started since went late too. Counting the queued ones alone saw a
    # tenth of them (2 late per second of 20).
    _, state, _ = run(policy, late_ticks(900.0, depth=30, wait=1.5), before)
    assert state.late == pytest.approx(state.offered, rel=0.01)
    assert boost(state) == 1.0


# --------------------------------------------------------------------------- load trend


def ramp(proportional_service: bool) -> list[dict[str, object]]:
    """Arrivals from 2/s to 10/s over 20 minutes; 10 requests in flight throughout.

    With ``proportional_service`` the completion rate keeps pace, so requests get shorter
    as traffic grows and the offered load stays at 10 erlangs; otherwise each request
    keeps taking 2 s and the load grows with the rate.
    """
    ticks: list[dict[str, object]] = []
    for i in range(241):
        rate = 2.0 + 8.0 * i / 240
        ticks.append(
            {
                "t": 5.0 * i,
                "arrival": rate,
                "completion": rate if proportional_service else 5.0,
                "in_flight": 10,
                "running": 40,
            }
        )
    return ticks


def test_rate_rising_with_the_service_rate_is_not_extrapolated() -> None:
    # Same memory for the level and the service rate: the load is exactly flat.
    params = SlaParams(level_window=60, service_window=60, trend_window=300)
    _, state, terms = run(SlaPolicy(params), ramp(proportional_service=True))
    assert state.load == pytest.approx(10.0)
    assert state.load_slope == pytest.approx(0.0, abs=1e-9)
    assert terms["mode"] == "erlang"
    assert terms["arrival_rate"] == pytest.approx(state.rate)  # no look-ahead


def test_estimators_converging_from_their_first_samples_are_not_a_trend() -> None:
    # A daemon starting under load: the first sample (1/s) is far below the steady 10/s,
    # and the level takes a few minutes to converge. That rise is not a trend to extrapolate.
    ticks = steady(10.0, 2.0, t_end=1800.0, running=40)
    ticks[0] = {**ticks[0], "arrival": 1.0}
    _, state, terms = run(SlaPolicy(SlaParams()), ticks)
    assert state.load == pytest.approx(20.0, rel=1e-3)
    ahead = state.load_slope * (POOL.boot_time_s + POOL.interval_s)
    assert abs(ahead) < 0.05  # erlangs; learning from the first tick leaves ~0.6
    assert float(terms["arrival_rate"]) == pytest.approx(10.0, rel=1e-3)  # type: ignore[arg-type]


def test_rising_load_is_extrapolated_one_boot_ahead() -> None:
    params = SlaParams(level_window=60, service_window=60, trend_window=300)
    _, state, terms = run(SlaPolicy(params), ramp(proportional_service=False))
    assert state.load is not None and state.rate is not None
    assert state.load_slope > 0
    ahead = state.load_slope * (POOL.boot_time_s + POOL.interval_s)
    assert terms["mode"] == "erlang"
    mu = float(terms["service_rate"])  # type: ignore[arg-type]
    assert terms["arrival_rate"] == pytest.approx((state.load + ahead) * mu)
    assert float(terms["arrival_rate"]) > state.rate + 1.0  # type: ignore[arg-type]


# --------------------------------------------------------------------------- service_cv


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.05, 80.0), service_s=st.floats(0.1, 10.0))
def test_less_variable_service_never_needs_more_slots(rate: float, service_s: float) -> None:
    busy = max(1, round(rate * service_s))
    mu = rate / busy
    slots = []
    for cv in (0.0, 0.5, 1.0, 2.0, 4.0):
        rec, _ = SlaPolicy(SlaParams(service_cv=cv)).recommend(
            ctx(arrival=rate, completion=rate, in_flight=busy, running=50), SlaState()
        )
        slots.append(int(rec.terms["erlang_slots"]))  # type: ignore[arg-type]
        if cv == 1.0:  # exponential service times: the plain M/M/c answer
            assert slots[-1] == slots_for(rate, mu, 0.01)
    assert slots == sorted(slots)


def test_service_cv_matters_where_the_budget_is_tight() -> None:
    sizes = {
        cv: SlaPolicy(SlaParams(service_cv=cv))
        .recommend(ctx(arrival=20.0, completion=20.0, in_flight=40, pool=TIGHT), SlaState())[0]
        .terms["erlang_slots"]
        for cv in (0.0, 1.0, 3.0)
    }
    assert sizes[0.0] < sizes[1.0] < sizes[3.0]  # type: ignore[operator]


# --------------------------------------------------------------------------- out_tolerance


def miss_probability(instances: int, rate: float) -> float:
    return wait_tail(instances * 8, rate, 0.5, TIGHT.max_wait_s)


def rate_missing(instances: int, low: float, high: float) -> float:
    """A rate at which ``instances`` miss with probability in (low, high] (2 s requests)."""
    rate = 0.1
    while not low < miss_probability(instances, rate) <= high:
        rate += 0.01
        assert rate < instances * 4, "no rate in the band"
    return rate


def decide(out_tolerance: float, rate: float, running: int) -> int:
    busy = max(1, round(rate * 2.0))
    rec, _ = SlaPolicy(SlaParams(out_tolerance=out_tolerance)).recommend(
        ctx(arrival=rate, completion=busy / 2.0, in_flight=busy, running=running, pool=TIGHT),
        SlaState(),
    )
    assert rec.terms["mode"] == "erlang"
    return rec.desired


def test_out_tolerance_holds_a_fleet_missing_less_than_twice_the_budget() -> None:
    rate = rate_missing(5, 0.01, 0.02)
    assert decide(1.0, rate, running=5) > 5  # the plain policy scales out
    assert decide(2.0, rate, running=5) == 5  # within 2x the budget: held


def test_out_tolerance_scales_out_beyond_twice_the_budget() -> None:
    rate = rate_missing(5, 0.02, 0.05)
    assert decide(2.0, rate, running=5) > 5
    assert decide(2.0, rate, running=5) == decide(1.0, rate, running=5)
