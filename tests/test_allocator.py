"""The allocator spreads a pool's total over its groups: spot first, cheapest first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autoscaler.config.models import GroupConfig
from autoscaler.config.to_core import group_spec
from autoscaler.core.allocator import Allocator
from autoscaler.core.model import FleetState, GroupState, Market
from autoscaler.core.specs import GroupSpec


def _group(name: str, market: str, price: float, max_: int | None = None) -> GroupSpec:
    data: dict[str, object] = {"name": name, "provider": "local", "market": market,
                               "hourly_price": price}
    if max_ is not None:
        data["max"] = max_
    return group_spec(GroupConfig.model_validate(data))


GROUPS = [
    _group("od", "on-demand", 4.0),
    _group("spot-b", "spot", 1.6, max_=3),
    _group("spot-a", "spot", 1.2, max_=2),
]


def _fleet(**available: bool) -> FleetState:
    return FleetState(tuple(
        GroupState(g.name, g.market, desired=0, booting=0, running=0,
                   available=available.get(g.name.replace("-", "_"), True))
        for g in GROUPS
    ))


def test_cheapest_spot_fills_first_then_next_spot_then_on_demand() -> None:
    allocator = Allocator(GROUPS)
    assert allocator.allocate(1, _fleet()) == {"spot-a": 1, "spot-b": 0, "od": 0}
    assert allocator.allocate(4, _fleet()) == {"spot-a": 2, "spot-b": 2, "od": 0}
    assert allocator.allocate(9, _fleet()) == {"spot-a": 2, "spot-b": 3, "od": 4}


def test_unavailable_spot_keeps_what_runs_and_falls_back_to_on_demand() -> None:
    fleet = FleetState((
        GroupState("od", Market.ON_DEMAND, 0, 0, 0),
        GroupState("spot-b", Market.SPOT, 3, 2, 1, available=False),
        GroupState("spot-a", Market.SPOT, 2, 0, 2),
    ))
    assert Allocator(GROUPS).allocate(6, fleet) == {"spot-a": 2, "spot-b": 1, "od": 3}


def test_spot_returns_and_the_allocation_moves_back() -> None:
    allocator = Allocator(GROUPS)
    short = FleetState((
        GroupState("od", Market.ON_DEMAND, 3, 0, 3),
        GroupState("spot-b", Market.SPOT, 0, 0, 0, available=False),
        GroupState("spot-a", Market.SPOT, 2, 0, 2),
    ))
    back = FleetState(tuple(
        GroupState(g.name, g.market, g.desired, g.booting, g.running, available=True)
        for g in short.groups
    ))
    assert allocator.allocate(5, short)["od"] == 3
    # Spot is asked for its share back; on-demand keeps serving until spot runs it (below).
    assert allocator.allocate(5, back) == {"spot-a": 2, "spot-b": 3, "od": 3}


def test_shortfall_stays_on_the_preferred_group_when_everything_is_full() -> None:
    groups = [_group("spot", "spot", 1.0, max_=10), _group("od", "on-demand", 4.0, max_=1)]
    fleet = FleetState((
        GroupState("spot", Market.SPOT, 1, 0, 1, available=False),
        GroupState("od", Market.ON_DEMAND, 1, 0, 1),
    ))
    assert Allocator(groups).allocate(5, fleet) == {"spot": 4, "od": 1}


@given(st.integers(min_value=0, max_value=500),
       st.booleans(), st.booleans())
def test_allocation_sums_to_desired_within_group_limits(
    desired: int, a_ok: bool, b_ok: bool
) -> None:
    targets = Allocator(GROUPS).allocate(desired, _fleet(spot_a=a_ok, spot_b=b_ok))
    assert sum(targets.values()) == desired
    assert targets["spot-a"] <= 2 and targets["spot-b"] <= 3


def test_moving_back_to_spot_keeps_on_demand_until_the_spot_replacement_runs() -> None:
    groups = [_group("spot", "spot", 1.0), _group("od", "on-demand", 4.0)]
    allocator = Allocator(groups)
    # Spot has just returned: 3 instances are needed, 2 run on spot, 1 on on-demand.
    returned = FleetState((
        GroupState("spot", Market.SPOT, 2, 0, 2),
        GroupState("od", Market.ON_DEMAND, 1, 0, 1),
    ))
    assert allocator.allocate(3, returned) == {"spot": 3, "od": 1}
    # The spot replacement is booting: on-demand still serves.
    booting = FleetState((
        GroupState("spot", Market.SPOT, 3, 1, 2),
        GroupState("od", Market.ON_DEMAND, 1, 0, 1),
    ))
    assert allocator.allocate(3, booting) == {"spot": 3, "od": 1}
    # It runs: on-demand goes.
    ready = FleetState((
        GroupState("spot", Market.SPOT, 3, 0, 3),
        GroupState("od", Market.ON_DEMAND, 1, 0, 1),
    ))
    assert allocator.allocate(3, ready) == {"spot": 3, "od": 0}


def test_a_real_scale_in_is_not_held_back() -> None:
    groups = [_group("spot", "spot", 1.0), _group("od", "on-demand", 4.0)]
    fleet = FleetState((
        GroupState("spot", Market.SPOT, 3, 0, 3),
        GroupState("od", Market.ON_DEMAND, 2, 0, 2),
    ))
    assert Allocator(groups).allocate(3, fleet) == {"spot": 3, "od": 0}


def _spec(name: str, market: Market, price: float, *, min_: int = 0,
          max_: int | None = None) -> GroupSpec:
    return GroupSpec(name, market, price, max_, min_)


SPOT_OD = [
    _spec("spot", Market.SPOT, 1.0),
    _spec("od-b", Market.ON_DEMAND, 5.0),
    _spec("od-a", Market.ON_DEMAND, 4.0, max_=2),
]


def _empty(groups: list[GroupSpec], **unavailable: bool) -> FleetState:
    return FleetState(tuple(
        GroupState(g.name, g.market, 0, 0, 0, available=not unavailable.get(
            g.name.replace("-", "_"), False))
        for g in groups
    ))


def test_on_demand_base_fills_on_demand_first_and_is_not_counted_toward_spot() -> None:
    allocator = Allocator(SPOT_OD, on_demand_base=3)
    # Below the base everything is on-demand, cheapest on-demand group first.
    assert allocator.allocate(2, _empty(SPOT_OD)) == {"spot": 0, "od-a": 2, "od-b": 0}
    assert allocator.allocate(3, _empty(SPOT_OD)) == {"spot": 0, "od-a": 2, "od-b": 1}
    # Above it, the rest goes spot first.
    assert allocator.allocate(10, _empty(SPOT_OD)) == {"spot": 7, "od-a": 2, "od-b": 1}


def test_on_demand_base_that_on_demand_cannot_take_goes_to_spot() -> None:
    allocator = Allocator(SPOT_OD, on_demand_base=3)
    fleet = _empty(SPOT_OD, od_a=True, od_b=True)  # both on-demand groups failing launches
    targets = allocator.allocate(5, fleet)
    assert targets["spot"] == 5 and sum(targets.values()) == 5


def test_group_min_is_a_floor_even_when_spot_is_unavailable() -> None:
    groups = [_spec("spot", Market.SPOT, 1.0, min_=1), _spec("od", Market.ON_DEMAND, 4.0, min_=1)]
    allocator = Allocator(groups)
    assert allocator.allocate(2, _empty(groups)) == {"spot": 1, "od": 1}
    assert allocator.allocate(5, _empty(groups)) == {"spot": 4, "od": 1}
    # spot stocked out with nothing running: its floor is still asked for, the rest moves.
    assert allocator.allocate(5, _empty(groups, spot=True)) == {"spot": 1, "od": 4}


def test_on_demand_floors_count_toward_the_base() -> None:
    groups = [_spec("spot", Market.SPOT, 1.0), _spec("od", Market.ON_DEMAND, 4.0, min_=2)]
    assert Allocator(groups, on_demand_base=3).allocate(6, _empty(groups)) == {
        "spot": 3, "od": 3}
    assert Allocator(groups, on_demand_base=1).allocate(6, _empty(groups)) == {
        "spot": 4, "od": 2}


def test_return_to_spot_with_a_base_keeps_on_demand_until_spot_runs() -> None:
    groups = [_spec("spot", Market.SPOT, 1.0), _spec("od", Market.ON_DEMAND, 4.0)]
    allocator = Allocator(groups, on_demand_base=1)
    returned = FleetState((
        GroupState("spot", Market.SPOT, 0, 0, 0),
        GroupState("od", Market.ON_DEMAND, 4, 0, 4),
    ))
    assert allocator.allocate(4, returned) == {"spot": 3, "od": 4}
    ready = FleetState((
        GroupState("spot", Market.SPOT, 3, 0, 3),
        GroupState("od", Market.ON_DEMAND, 4, 0, 4),
    ))
    assert allocator.allocate(4, ready) == {"spot": 3, "od": 1}


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=6),
       st.booleans(), st.booleans(), st.integers(min_value=0, max_value=3))
def test_floors_base_and_limits_hold_together(
    desired: int, base: int, spot_ok: bool, od_ok: bool, floor: int,
) -> None:
    groups = [_spec("spot", Market.SPOT, 1.0, min_=floor, max_=20),
              _spec("od", Market.ON_DEMAND, 4.0, min_=floor)]
    targets = Allocator(groups, on_demand_base=base).allocate(
        desired, _empty(groups, spot=not spot_ok, od=not od_ok))
    assert targets["spot"] >= floor and targets["od"] >= floor
    assert targets["spot"] <= 20
    assert sum(targets.values()) == max(desired, 2 * floor)
    if od_ok:  # the base is honoured whenever on-demand can launch (after spot's floor)
        assert targets["od"] >= min(base, desired - floor)
