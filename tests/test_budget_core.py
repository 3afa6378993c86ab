"""The budget guardrail's arithmetic (``autoscaler.core.budget``): accrual per UTC month, alert
crossings, and the hard cap on scale-out."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.allocator import Allocator
from autoscaler.core.budget import (
    GLOBAL_SCOPE,
    BudgetSpec,
    CapInput,
    Ledger,
    accrue,
    allowance_usd_per_h,
    billed_rate,
    cap_scale_out,
    crossings,
    month_end,
    month_of,
    planned_rate,
)
from autoscaler.core.model import Decision, FleetState, GroupState, Market
from autoscaler.core.specs import GroupSpec


def epoch(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


DEC_31 = epoch(2026, 12, 31, 23, 0, 0)


def test_months_are_utc_and_december_rolls_into_january() -> None:
    assert month_of(DEC_31) == "2026-12"
    assert month_end(DEC_31) == epoch(2027, 1, 1)
    assert month_of(epoch(2027, 1, 1)) == "2027-01"
    assert month_end(epoch(2027, 2, 10)) == epoch(2027, 3, 1)


def test_a_constant_rate_is_charged_per_second_observed() -> None:
    ledger = Ledger("2026-12")
    wall = epoch(2026, 12, 1, 12)
    ledger = accrue(ledger, wall, 36.0, max_gap_s=120)  # first sight: nothing charged yet
    assert ledger.spent_usd == 0.0
    for _ in range(100):
        wall += 10.0
        ledger = accrue(ledger, wall, 36.0, max_gap_s=120)
    assert abs(ledger.spent_usd - 36.0 * 1000 / 3600) < 1e-9  # $36/h for 1,000 s = $10


def test_the_previous_rate_is_charged_until_the_tick_that_sees_a_change() -> None:
    wall = epoch(2026, 12, 1)
    ledger = accrue(Ledger("2026-12"), wall, 3600.0, max_gap_s=120)  # $1/s
    ledger = accrue(ledger, wall + 10, 0.0, max_gap_s=120)
    ledger = accrue(ledger, wall + 20, 0.0, max_gap_s=120)
    assert abs(ledger.spent_usd - 10.0) < 1e-9


def test_unobserved_time_beyond_the_gap_is_not_charged() -> None:
    wall = epoch(2026, 12, 1)
    ledger = accrue(Ledger("2026-12"), wall, 3600.0, max_gap_s=120)
    ledger = accrue(ledger, wall + 3600, 3600.0, max_gap_s=120)
    assert abs(ledger.spent_usd - 120.0) < 1e-9


def test_a_wall_clock_that_goes_back_charges_nothing() -> None:
    wall = epoch(2026, 12, 1)
    ledger = accrue(Ledger("2026-12"), wall, 3600.0, max_gap_s=120)
    back = accrue(ledger, wall - 50, 3600.0, max_gap_s=120)
    assert back.spent_usd == 0.0 and back.last_wall == wall


def test_the_month_boundary_splits_the_interval_and_resets_the_spend() -> None:
    wall = epoch(2027, 1, 1) - 30
    ledger = accrue(Ledger("2026-12", spent_usd=500.0, alerted=2), wall, 3600.0, max_gap_s=120)
    ledger = accrue(ledger, wall + 40, 3600.0, max_gap_s=120)
    assert ledger.month == "2027-01"
    assert abs(ledger.spent_usd - 10.0) < 1e-9  # only the 10 s after midnight
    assert ledger.alerted == 0  # a new month alerts again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.1, max_value=60.0), min_size=1, max_size=60),
       st.floats(min_value=0.0, max_value=500.0))
def test_accrual_is_rate_times_observed_time(steps: list[float], rate: float) -> None:
    wall = start = epoch(2026, 12, 2)
    ledger = accrue(Ledger(month_of(wall)), wall, rate, max_gap_s=120)
    for step in steps:
        wall += step
        ledger = accrue(ledger, wall, rate, max_gap_s=120)
    assert abs(ledger.spent_usd - rate * (wall - start) / 3600) <= 1e-6 * max(1.0, rate)


def test_each_level_is_crossed_once_per_month() -> None:
    spec = BudgetSpec("pool:a", monthly_usd=100.0, alert_at=0.8)
    ledger, found = crossings(spec, Ledger("2026-12", spent_usd=79.0))
    assert found == ()
    ledger, found = crossings(spec, replace_spent(ledger, 81.0))
    assert [c.level for c in found] == ["alert"] and found[0].ratio == 0.81
    ledger, found = crossings(spec, replace_spent(ledger, 90.0))
    assert found == ()
    ledger, found = crossings(spec, replace_spent(ledger, 101.0))
    assert [c.level for c in found] == ["exhausted"]
    _, found = crossings(spec, Ledger("2026-12", spent_usd=150.0))  # both at once from 0
    assert [c.level for c in found] == ["alert", "exhausted"]


def replace_spent(ledger: Ledger, spent: float) -> Ledger:
    return Ledger(ledger.month, spent, ledger.rate_usd_per_h, ledger.last_wall, ledger.alerted)


def test_the_allowance_spreads_the_rest_over_the_rest_of_the_month() -> None:
    spec = BudgetSpec(GLOBAL_SCOPE, monthly_usd=1000.0, hard_cap=True)
    wall = epoch(2026, 12, 31, 14)  # ten hours left
    allowed = allowance_usd_per_h(spec, Ledger("2026-12", spent_usd=900.0), wall)
    assert allowed is not None and abs(allowed - 10.0) < 1e-9
    assert allowance_usd_per_h(BudgetSpec("x", 1000.0), Ledger("2026-12"), wall) is None
    assert allowance_usd_per_h(spec, Ledger("2026-12", spent_usd=2000.0), wall) == 0.0


# --------------------------------------------------------------------------- the cap

SPOT = GroupSpec("spot", Market.SPOT, hourly_price=1.0)
OD = GroupSpec("od", Market.ON_DEMAND, hourly_price=3.0)
PRICES = {"spot": 1.0, "od": 3.0}


def fleet(spot: int, od: int, *, spot_available: bool = True) -> FleetState:
    return FleetState((GroupState("spot", Market.SPOT, spot, 0, spot, available=spot_available),
                       GroupState("od", Market.ON_DEMAND, od, 0, od)))


def wanting(pool: str, current: int, desired: int, f: FleetState, floor: int = 0,
            scopes: tuple[str, ...] = ("pool:a",)) -> CapInput:
    alloc = Allocator((SPOT, OD))
    decision = Decision(pool, 0.0, current, desired, alloc.allocate(desired, f), "policy")
    return CapInput(decision, f, alloc, PRICES, floor, scopes)


def test_billed_rate_counts_booting_running_and_draining_not_pending() -> None:
    f = FleetState((GroupState("spot", Market.SPOT, 4, 1, 2, draining=1, pending=1),
                    GroupState("od", Market.ON_DEMAND, 1, 0, 1)))
    assert billed_rate(f, PRICES) == 4 * 1.0 + 3.0


def test_scale_out_is_held_at_what_the_allowance_pays_for() -> None:
    p = wanting("a", current=2, desired=10, f=fleet(2, 0))
    out = cap_scale_out({"a": p}, {"pool:a": 5.5})
    assert out["a"].desired == 5 and out["a"].targets == {"spot": 5, "od": 0}
    assert out["a"].terms["budget_capped_from"] == 10
    assert "budget" in out["a"].reason


def test_the_cap_never_scales_in_nor_goes_below_min() -> None:
    p = wanting("a", current=6, desired=9, f=fleet(6, 0))
    assert cap_scale_out({"a": p}, {"pool:a": 0.0})["a"].desired == 6
    low = wanting("a", current=0, desired=3, f=fleet(0, 0), floor=2)
    assert cap_scale_out({"a": low}, {"pool:a": 0.0})["a"].desired == 2
    down = wanting("a", current=6, desired=4, f=fleet(6, 0))
    assert cap_scale_out({"a": down}, {"pool:a": 0.0})["a"] == down.decision


def test_prices_follow_the_allocation_spot_then_on_demand() -> None:
    """Spot unavailable: the extra instances go on-demand at $3/h, so $7/h buys two."""
    p = wanting("a", current=0, desired=5, f=fleet(0, 0, spot_available=False))
    out = cap_scale_out({"a": p}, {"pool:a": 7.0})
    assert out["a"].targets == {"spot": 0, "od": 2}


def test_uncapped_scopes_and_pools_outside_them_keep_their_decision() -> None:
    p = wanting("a", current=0, desired=5, f=fleet(0, 0))
    assert cap_scale_out({"a": p}, {"pool:a": None})["a"] == p.decision
    other = wanting("b", current=0, desired=5, f=fleet(0, 0), scopes=())
    assert cap_scale_out({"b": other}, {"pool:a": 1.0})["b"] == other.decision


def test_a_global_allowance_is_shared_round_robin() -> None:
    a = wanting("a", 0, 10, fleet(0, 0), scopes=(GLOBAL_SCOPE,))
    b = wanting("b", 0, 10, fleet(0, 0), scopes=(GLOBAL_SCOPE,))
    held = wanting("c", 3, 3, fleet(3, 0), scopes=(GLOBAL_SCOPE,))  # already spends $3/h
    out = cap_scale_out({"a": a, "b": b, "c": held}, {GLOBAL_SCOPE: 9.0})
    assert (out["a"].desired, out["b"].desired, out["c"].desired) == (3, 3, 3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 30), st.integers(0, 3),
                       st.booleans()), min_size=1, max_size=4),
    st.floats(min_value=0.0, max_value=80.0),
)
def test_capped_plans_fit_the_allowance_or_stay_where_they_were(
    pools: list[tuple[int, int, int, bool]], allowance: float
) -> None:
    inputs = {}
    for i, (current, desired, floor, spot_ok) in enumerate(pools):
        f = fleet(current, 0, spot_available=spot_ok)
        inputs[f"p{i}"] = wanting(f"p{i}", current, max(desired, floor), f, floor=floor,
                                  scopes=(GLOBAL_SCOPE,))
    out = cap_scale_out(inputs, {GLOBAL_SCOPE: allowance})
    base_rate = 0.0
    for name, p in inputs.items():
        d, new = p.decision, out[name]
        assert new.desired <= d.desired  # never more than asked
        assert new.desired >= min(d.desired, max(p.floor, d.current))  # never below min/current
        base = d.desired if d.desired <= d.current else max(p.floor, d.current)
        base_rate += planned_rate(p.allocator.allocate(base, p.fleet), PRICES)
    total = sum(planned_rate(d.targets, PRICES) for d in out.values())
    grown = any(out[n].desired > max(p.floor, p.decision.current) for n, p in inputs.items()
                if p.decision.desired > p.decision.current)
    if grown:  # whatever was granted beyond the base fits the allowance
        assert total <= max(allowance, base_rate) + 1e-6
