"""Properties of every built-in policy behind the real config loader and ``PoolController``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.config.models import parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.core.pipeline import PoolController
from autoscaler.core.policy import PolicyContext
from autoscaler.registry import Registry

CONFIG = """\
pools:
  - name: p
    queue: {{kind: memory}}
    sla: {{max_wait: 10s, target: 0.99}}
    capacity: {{min: {min}, max: {max}, slots_per_instance: 8, boot_time: 180s}}
    policy: {policy}
    groups: [{{name: g, provider: local}}]
"""

POLICIES = ["threshold", "target-tracking", "step", "sla", "{kind: fixed, instances: 7}"]
MONOTONE = [
    "threshold",
    "{kind: threshold, metric: waiting, target: 6}",
    "target-tracking",
    "{kind: target-tracking, metric: oldest_wait}",
    "step",
    "sla",
    "{kind: sla, service_time: 3}",
]


def controller(
    registries: dict[str, Registry[Any]], policy: str, lo: int = 0, hi: int = 40
) -> PoolController:
    config = parse_config(CONFIG.format(policy=policy, min=lo, max=hi), "p.yaml", registries)
    return controller_for(config.pools[0], 5.0, registries["policies"])


def fleet(running: int, booting: int) -> FleetState:
    return FleetState((GroupState("g", Market.ON_DEMAND, running + booting, booting, running),))


observations = st.builds(
    dict,
    dt=st.floats(0.5, 60.0),
    depth=st.integers(0, 500),
    wait=st.one_of(st.none(), st.floats(0.0, 60.0)),
    in_flight=st.one_of(st.none(), st.integers(0, 300)),
    arrival=st.one_of(st.none(), st.floats(0.0, 80.0)),
    completion=st.one_of(st.none(), st.floats(0.0, 80.0)),
    fresh=st.booleans(),
    booting=st.integers(0, 5),
)


def observe(t: float, o: dict[str, Any], **override: Any) -> Observation:
    values = {**o, **override}
    return Observation(
        time=t,
        depth=values["depth"],
        oldest_wait_s=values["wait"] if values["depth"] else None,
        in_flight=values["in_flight"],
        arrival_rate=values["arrival"],
        completion_rate=values["completion"],
        fresh=values["fresh"],
    )


@pytest.mark.parametrize("policy", POLICIES)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(observations, min_size=1, max_size=40),
    lo=st.integers(0, 3),
    span=st.integers(1, 30),
)
def test_desired_within_bounds(
    registries: dict[str, Registry[Any]],
    policy: str,
    history: list[dict[str, Any]],
    lo: int,
    span: int,
) -> None:
    pc = controller(registries, policy, lo, lo + span)
    state, running, t = pc.initial_state(), lo, 0.0
    for o in history:
        t += o["dt"]
        decision, state = pc.decide(observe(t, o), fleet(running, o["booting"]), state)
        assert lo <= decision.desired <= lo + span
        assert sum(decision.targets.values()) == decision.desired
        running = decision.desired


@pytest.mark.parametrize("policy", MONOTONE)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(observations, min_size=0, max_size=20),
    now=observations,
    more_depth=st.integers(0, 300),
    more_wait=st.floats(0.0, 60.0),
    running=st.integers(0, 30),
)
def test_more_waiting_never_yields_fewer_instances(
    registries: dict[str, Registry[Any]],
    policy: str,
    history: list[dict[str, Any]],
    now: dict[str, Any],
    more_depth: int,
    more_wait: float,
    running: int,
) -> None:
    """From the same state, a deeper queue or an older head never asks for fewer instances.

    Compared on the policy's own recommendation (the guards only narrow both the same way).
    """
    pc = controller(registries, policy)
    state, t = pc.policy.initial_state(), 0.0

    for o in history:
        t += o["dt"]
        _, state = pc.policy.recommend(
            PolicyContext(observe(t, o), fleet(running, o["booting"]), pc.settings), state
        )
    t += now["dt"]
    base_wait = now["wait"] if now["wait"] is not None else 0.0
    depth = max(1, now["depth"])
    less = observe(t, now, depth=depth, wait=base_wait)
    more = observe(t, now, depth=depth + more_depth, wait=base_wait + more_wait)
    f = fleet(running, now["booting"])
    low, _ = pc.policy.recommend(PolicyContext(less, f, pc.settings), state)
    high, _ = pc.policy.recommend(PolicyContext(more, f, pc.settings), state)
    assert high.desired >= low.desired


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=st.lists(observations, min_size=1, max_size=30), running=st.integers(0, 40))
@pytest.mark.parametrize("policy", POLICIES)
def test_stale_data_never_scales_in_through_the_pipeline(
    registries: dict[str, Registry[Any]], policy: str, history: list[dict[str, Any]], running: int
) -> None:
    pc = controller(registries, policy)
    state, t = pc.initial_state(), 0.0
    for o in history:
        t += o["dt"]
        _, state = pc.decide(observe(t, o), fleet(running, 0), state)
    decision, _ = pc.decide(
        observe(t + 5, history[-1], fresh=False, depth=0, arrival=0.0), fleet(running, 0), state
    )
    assert decision.desired >= running
