"""Erlang B/C and the SLA search against closed forms, published values and large c."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.erlang import (
    erlang_b,
    erlang_c,
    min_servers,
    min_servers_bounds,
    wait_tail,
)


def closed_form_c(c: int, a: float) -> float:
    """Textbook Erlang C with factorials: independent of the recursion, fine for small c."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("rho", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_single_server_waits_with_probability_rho(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho, rel=1e-12)


def test_published_two_server_value() -> None:
    # c = 2, a = 1 erlang: C = 1/3 (e.g. Kleinrock, Queueing Systems vol. 1).
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)


def test_call_centre_textbook_example() -> None:
    # Erlang B for 10 servers at 5 erlangs is 0.01838 (standard Erlang B tables).
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-6)


@given(c=st.integers(1, 30), load=st.floats(0.01, 0.99))
def test_recursion_matches_closed_form(c: int, load: float) -> None:
    a = load * c
    assert erlang_c(c, a) == pytest.approx(closed_form_c(c, a), rel=1e-9)


def test_overload_means_everyone_waits() -> None:
    assert erlang_c(4, 4.0) == 1.0
    assert erlang_c(4, 7.5) == 1.0
    assert wait_tail(4, 10.0, 2.0, 3.0) == 1.0


def test_mm1_wait_tail() -> None:
    lam, mu, t = 0.5, 1.0, 2.0
    assert wait_tail(1, lam, mu, t) == pytest.approx(0.5 * math.exp(-(mu - lam) * t))


@pytest.mark.parametrize("a", [9_000.0, 9_900.0, 9_999.0])
def test_finite_at_ten_thousand_servers(a: float) -> None:
    c = 10_000
    value = erlang_c(c, a)
    assert math.isfinite(value) and 0.0 < value < 1.0
    # The warm-started recursion agrees with the plain one from B(0) = 1.
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    assert erlang_b(c, a) == pytest.approx(b, rel=1e-9)


def test_erlang_c_falls_as_servers_are_added() -> None:
    values = [erlang_c(c, 50.0) for c in range(51, 80)]
    assert all(x > y for x, y in itertools.pairwise(values))


@settings(max_examples=200)
@given(
    lam=st.floats(0.01, 500.0),
    service_s=st.floats(0.05, 30.0),
    max_wait=st.floats(0.5, 120.0),
    target=st.sampled_from([0.9, 0.95, 0.99, 0.999]),
    step=st.integers(1, 16),
)
def test_min_servers_is_the_least_multiple_meeting_the_bound(
    lam: float, service_s: float, max_wait: float, target: float, step: int
) -> None:
    mu = 1.0 / service_s
    tail = 1.0 - target
    c = min_servers(lam, mu, max_wait, tail, step=step)
    assert c % step == 0
    assert wait_tail(c, lam, mu, max_wait) <= tail * (1 + 1e-9)
    if c - step > 0:
        assert wait_tail(c - step, lam, mu, max_wait) > tail


def test_min_servers_stops_at_the_ceiling() -> None:
    assert min_servers(100.0, 1.0, 1.0, 0.01, step=8, upper=20) == 24
    assert min_servers(0.0, 1.0, 1.0, 0.01, step=8, lower=3) == 8


def test_min_servers_square_root_staffing_scale() -> None:
    # At 9,000 erlangs a 99 % / 5 s target needs only a few sqrt(a) of headroom.
    c = min_servers(9_000.0, 1.0, 5.0, 0.01)
    assert 9_000 < c < 9_000 + 3 * math.sqrt(9_000)


@pytest.mark.parametrize(
    ("args", "message"),
    [((1, -1.0), "load"), ((-1, 1.0), "servers")],
)
def test_bad_input_names_the_argument(args: tuple[int, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        erlang_b(*args)


# --------------------------------------------------------------------------- variability


loads = st.floats(0.01, 500.0)
service_times = st.floats(0.05, 30.0)
max_waits = st.floats(0.5, 120.0)
tails = st.sampled_from([0.1, 0.05, 0.01, 0.001])


@settings(max_examples=200)
@given(lam=loads, service_s=service_times, max_wait=max_waits, tail=tails, step=st.integers(1, 8))
def test_variability_one_is_the_plain_mmc_answer(
    lam: float, service_s: float, max_wait: float, tail: float, step: int
) -> None:
    mu = 1.0 / service_s
    plain = min_servers(lam, mu, max_wait, tail, step=step)
    assert min_servers(lam, mu, max_wait, tail, step=step, variability=1.0) == plain


@settings(max_examples=200)
@given(
    lam=loads,
    service_s=service_times,
    max_wait=max_waits,
    tail=tails,
    v=st.floats(0.05, 20.0),
    more=st.floats(1.0, 10.0),
)
def test_more_variable_service_never_needs_fewer_servers(
    lam: float, service_s: float, max_wait: float, tail: float, v: float, more: float
) -> None:
    mu = 1.0 / service_s
    assert min_servers(lam, mu, max_wait, tail, variability=v * more) >= min_servers(
        lam, mu, max_wait, tail, variability=v
    )


def test_variability_stretches_the_wait_tail() -> None:
    # The tail decays v times more slowly: sizing with v is sizing for max_wait / v.
    lam, mu = 40.0, 0.5
    assert min_servers(lam, mu, 10.0, 0.01, variability=4.0) == min_servers(lam, mu, 2.5, 0.01)
    assert min_servers(lam, mu, 10.0, 0.01, variability=4.0) > min_servers(lam, mu, 10.0, 0.01)


@pytest.mark.parametrize("v", [0.0, -1.0, math.nan])
def test_invalid_variability_is_rejected(v: float) -> None:
    with pytest.raises(ValueError, match=r"min_servers: variability must be > 0"):
        min_servers(5.0, 1.0, 1.0, 0.01, variability=v)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5.0, 0.0), "service rate"),
        ((5.0, math.inf), "service rate"),
        ((-1.0, 1.0), "arrival rate"),
        ((math.nan, 1.0), "arrival rate"),
        ((math.inf, 1.0), "arrival rate"),
    ],
)
def test_min_servers_rejects_unusable_rates(args: tuple[float, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"min_servers: {message}"):
        min_servers(*args, 1.0, 0.01)
    with pytest.raises(ValueError, match=f"min_servers_bounds: {message}"):
        min_servers_bounds(*args, 1.0, 0.01)


# --------------------------------------------------------------------------- bounds


@settings(max_examples=300)
@given(
    lam=st.one_of(st.just(0.0), loads),
    service_s=service_times,
    max_wait=st.floats(0.01, 120.0),
    tail=st.floats(1e-9, 0.5),
    step=st.integers(1, 16),
    lower=st.integers(0, 64),
    upper=st.integers(1, 5_000),
    v=st.floats(0.05, 20.0),
)
def test_bounds_enclose_the_search(
    lam: float,
    service_s: float,
    max_wait: float,
    tail: float,
    step: int,
    lower: int,
    upper: int,
    v: float,
) -> None:
    kw = {"step": step, "lower": lower, "upper": upper, "variability": v}
    mu = 1.0 / service_s
    lo, hi = min_servers_bounds(lam, mu, max_wait, tail, **kw)  # type: ignore[arg-type]
    assert lo <= min_servers(lam, mu, max_wait, tail, **kw) <= hi  # type: ignore[arg-type]


def test_bounds_are_tight_enough_to_use() -> None:
    # 40 erlangs, 10 s budget, 2 s service: the search ends within a few slots of the load.
    lo, hi = min_servers_bounds(20.0, 0.5, 10.0, 0.01)
    assert (lo, hi) == (41, 42)
    assert lo <= min_servers(20.0, 0.5, 10.0, 0.01) <= hi
