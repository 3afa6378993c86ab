"""The decision core on restart and when decisions are not carried out.

* ``decide`` records no scale event; ``applied`` does. So a dry run or a failed resize does not
  flap (current 1, recommendation 50 gave 5, then 1 for 14 ticks, then 5 again) and is retried
  on the next tick.
* A change of the fleet that the controller did not make counts as an event when first seen.
* A new controller never scales in before a full scale-down window of its own has passed, for
  every built-in policy, and holds scale-in until rates are measured.
"""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.config.models import parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.core.guards import Guards
from autoscaler.core.model import FleetState, GroupState, Market, Observation, Recommendation
from autoscaler.core.pipeline import PoolController
from autoscaler.core.specs import BehaviorSpec, CapacitySpec, ScalingSpec
from autoscaler.registry import Registry

CONFIG = """
controller: {{interval: 5s}}
pools:
  - name: p
    queue: {{kind: memory}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: {max}, slots_per_instance: {slots}, boot_time: 180s}}
    policy: {policy}
    groups:
      - {{name: od, provider: local}}
"""


def controller(
    registries: dict[str, Registry[Any]], policy: str, *, max_: int = 100, slots: int = 1
) -> PoolController:
    text = CONFIG.format(policy=policy, max=max_, slots=slots)
    return controller_for(parse_config(text, "p.yaml", registries).pools[0], 5.0,
                          registries["policies"])


def fleet(desired: int, running: int | None = None) -> FleetState:
    running = desired if running is None else running
    return FleetState((GroupState("od", Market.ON_DEMAND, desired, 0, running),))


def waiting(t: float, depth: int, in_flight: int = 0, rate: float | None = None) -> Observation:
    return Observation(time=t, depth=depth, oldest_wait_s=1.0 if depth else 0.0,
                       in_flight=in_flight, arrival_rate=rate, completion_rate=rate)


# --------------------------------------------------------------------------- applied events


def test_unapplied_decisions_do_not_flap(registries: dict[str, Registry[Any]]) -> None:
    """Dry run / failed resize: the fleet stays at 1 and every tick asks for 5 again."""
    pc = controller(registries, "{kind: threshold}")
    state = pc.initial_state()
    desired = []
    for tick in range(20):
        decision, state = pc.decide(waiting(5.0 * tick, 50, rate=1.0), fleet(1), state)
        desired.append(decision.desired)
    assert desired == [5] * 20  # 1 + 4 pods per 15 s, every tick: nothing was applied
    assert state.guards.up_events == ()


def test_applied_decisions_pace_the_rate_rules(registries: dict[str, Registry[Any]]) -> None:
    pc = controller(registries, "{kind: threshold}")
    state = pc.initial_state()
    decision, state = pc.decide(waiting(0.0, 50, rate=1.0), fleet(1), state)
    assert decision.desired == 5
    state = pc.applied(state, decision)
    assert state.guards.up_events == ((0.0, 4),)
    # The fleet follows: 5 now. Within the 15 s period the rules allow max(1 + 4, 2 * 1) = 5.
    decision, state = pc.decide(waiting(5.0, 50, rate=1.0), fleet(5), state)
    assert decision.desired == 5 and "scale-up limited to 5" in decision.reason
    state = pc.applied(state, decision)  # no change: no event
    assert state.guards.up_events == ((0.0, 4),)
    decision, state = pc.decide(waiting(15.0, 50, rate=1.0), fleet(5), state)
    assert decision.desired == 10  # the period has passed: 5 + max(4, 100 %) = 10


def test_a_failed_resize_is_retried_on_the_next_tick(
    registries: dict[str, Registry[Any]],
) -> None:
    pc = controller(registries, "{kind: threshold}")
    state = pc.initial_state()
    first, state = pc.decide(waiting(0.0, 50, rate=1.0), fleet(1), state)
    # the resize failed: no ``applied``; the fleet still shows 1
    second, state = pc.decide(waiting(5.0, 50, rate=1.0), fleet(1), state)
    assert (first.desired, second.desired) == (5, 5)
    assert second.changes(fleet(1))


def test_a_change_nobody_applied_counts_once_when_seen(
    registries: dict[str, Registry[Any]],
) -> None:
    """Another actor scales 1 → 5: the rate rules count those 4 from the tick they show."""
    pc = controller(registries, "{kind: threshold}")
    state = pc.initial_state()
    _, state = pc.decide(waiting(0.0, 1, rate=1.0), fleet(1), state)
    decision, state = pc.decide(waiting(5.0, 50, rate=1.0), fleet(5), state)
    assert state.guards.up_events == ((5.0, 4),)
    assert decision.desired == 5  # start of period = 5 - 4 = 1: at most 1 + 4
    decision, state = pc.decide(waiting(10.0, 50, rate=1.0), fleet(5), state)
    assert state.guards.up_events == ((5.0, 4),)  # counted once, not on every tick
    decision, _ = pc.decide(waiting(20.5, 50, rate=1.0), fleet(5), state)
    assert decision.desired == 10


def test_a_partial_resize_is_corrected_by_what_the_fleet_shows(
    registries: dict[str, Registry[Any]],
) -> None:
    """Applied as +4 but only +2 took: the next tick counts -2, so the period's start stays
    the 1 the fleet really had."""
    pc = controller(registries, "{kind: threshold}")
    state = pc.initial_state()
    decision, state = pc.decide(waiting(0.0, 50, rate=1.0), fleet(1), state)
    state = pc.applied(state, decision)
    decision, state = pc.decide(waiting(5.0, 50, rate=1.0), fleet(3), state)
    assert state.guards.down_events == ((5.0, 2),)
    assert decision.desired == 5  # from a start of 3 - 4 + 2 = 1: 1 + 4


# --------------------------------------------------------------------------- restart

POLICIES = {
    "fixed": "{kind: fixed, instances: 1}",
    "threshold": "{kind: threshold}",
    "target-tracking": "{kind: target-tracking}",
    "step": "{kind: step}",
    "sla": "{kind: sla}",
}


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_a_restarted_controller_scales_nothing_in_for_a_full_window(
    registries: dict[str, Registry[Any]], kind: str
) -> None:
    """20 running, 40 in flight, 8 slots, no rates yet: each policy may want fewer (the
    ``sla`` policy wants 5 on its first tick), but the first 300 s remove nothing; after the
    window the count may fall."""
    pc = controller(registries, POLICIES[kind], slots=8)
    state = pc.initial_state()
    t0 = 1000.0
    first_recommended: int | None = None
    for step in range(60):  # every tick before t0 + 300 s, when the seeded window has passed
        t = t0 + 5.0 * step
        obs = Observation(time=t, depth=0, oldest_wait_s=0.0, in_flight=40,
                          arrival_rate=None if step == 0 else 2.0,
                          completion_rate=None if step == 0 else 2.0)
        decision, state = pc.decide(obs, fleet(20), state)
        if first_recommended is None:
            first_recommended = int(decision.terms["recommended"] or 0)
        assert decision.desired >= 20, (kind, t, decision.reason)
    assert first_recommended is not None and first_recommended < 20  # the hold did the work
    lowered = []
    for step in range(40):
        t = t0 + 300.0 + 5.0 * step
        obs = Observation(time=t, depth=0, oldest_wait_s=0.0, in_flight=40,
                          arrival_rate=2.0, completion_rate=2.0)
        decision, state = pc.decide(obs, fleet(20), state)
        lowered.append(decision.desired)
    assert min(lowered) < 20, (kind, lowered)  # then it may


def test_the_scale_up_window_is_not_seeded(registries: dict[str, Registry[Any]]) -> None:
    """Acting late on a surge is the costly mistake: a restart never delays a scale-up."""
    pc = controller(registries, "{kind: threshold}", slots=8)
    decision, _ = pc.decide(waiting(0.0, 400, in_flight=40), fleet(20), pc.initial_state())
    assert decision.desired == 40  # +100 % per 15 s from 20


def _guards(window: float, grace: float) -> Guards:
    behavior = BehaviorSpec(scale_down=ScalingSpec(stabilization_window=window))
    return Guards(CapacitySpec(max=100), behavior, measure_grace_s=grace)


def test_without_rates_scale_in_is_held_even_without_a_window() -> None:
    g = _guards(window=0.0, grace=10.0)
    state = g.observe_fleet(g.initial_state(), 0.0, 20, 20)
    out = g.apply(Observation(time=0.0, depth=0, in_flight=40), 20, Recommendation(5, "r"), state)
    assert out.desired == 20 and "no rates measured" in out.reason
    state = g.observe_fleet(out.state, 5.0, 20, 20)
    measured = Observation(time=5.0, depth=0, in_flight=40, arrival_rate=1.0)
    out = g.apply(measured, 20, Recommendation(5, "r"), state)
    assert out.desired == 5 and out.state.measured


def test_once_rates_were_seen_a_tick_without_them_never_scales_in() -> None:
    """A resumed controller's first tick (its sampler has no counter baseline yet) or a
    counter reset: the rate is unknown for a tick, and scale-in waits for it."""
    g = _guards(window=0.0, grace=10.0)
    state = g.observe_fleet(g.initial_state(), 0.0, 20, 20)
    out = g.apply(Observation(time=0.0, depth=0, arrival_rate=1.0), 20, Recommendation(20, "r"),
                  state)
    out = g.apply(Observation(time=100.0, depth=0), 20, Recommendation(5, "r"), out.state)
    assert out.desired == 20 and "no rates measured" in out.reason
    out = g.apply(Observation(time=105.0, depth=0, arrival_rate=0.5), 20,
                  Recommendation(5, "r"), out.state)
    assert out.desired == 5


def test_a_source_without_counters_is_held_only_for_the_grace() -> None:
    """A queue with no counters never reports rates: the hold ends after the grace."""
    g = _guards(window=0.0, grace=10.0)
    state = g.observe_fleet(g.initial_state(), 0.0, 20, 20)
    out = g.apply(Observation(time=9.0, depth=0), 20, Recommendation(5, "r"), state)
    assert out.desired == 20
    out = g.apply(Observation(time=10.0, depth=0), 20, Recommendation(5, "r"), out.state)
    assert out.desired == 5


def test_importing_the_core_loads_no_config_layer() -> None:
    """The import-linter contract, checked at run time too: a fresh interpreter importing the
    whole core loads no pydantic, yaml, asyncio, config or registry."""
    import subprocess
    import sys

    code = (
        "import sys, autoscaler.core.pipeline, autoscaler.core.specs, autoscaler.core.rates, "
        "autoscaler.core.state_codec, autoscaler.core.erlang\n"
        "print(sorted(m for m in ('pydantic', 'yaml', 'asyncio', 'structlog', "
        "'autoscaler.config', 'autoscaler.registry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
