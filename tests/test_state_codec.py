"""Controller state ↔ JSON: registered types round-trip; anything else is refused, clearly."""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import pytest

from autoscaler.config.models import parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.core.guards import GuardState
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.core.pipeline import ControllerState
from autoscaler.core.state_codec import StateCodec, StateCodecError, type_name
from autoscaler.policies.sla_estimators import SlaState
from autoscaler.policies.step import StepState
from autoscaler.registry import Registry
from autoscaler.runtime.persistence import codec_for

CONFIG = """
pools:
  - name: p
    queue: {kind: memory}
    sla: {max_wait: 2s}
    capacity: {max: 50, slots_per_instance: 8, boot_time: 180s}
    policy: {kind: sla}
    groups: [{name: od, provider: local}]
"""


def sla_state_after_ticks(registries: dict[str, Registry[Any]]) -> ControllerState:
    pool = parse_config(CONFIG, "p.yaml", registries).pools[0]
    pc = controller_for(pool, 5.0, registries["policies"])
    state = pc.initial_state()
    fleet = FleetState((GroupState("od", Market.ON_DEMAND, 4, 0, 4),))
    for t in range(4):
        obs = Observation(time=5.0 * t, depth=3, oldest_wait_s=0.5, in_flight=20,
                          arrival_rate=4.0, completion_rate=3.5)
        decision, state = pc.decide(obs, fleet, state)
        state = pc.applied(state, decision)
    return state


def test_controller_state_round_trips_with_infinities(
    registries: dict[str, Registry[Any]],
) -> None:
    state = sla_state_after_ticks(registries)
    assert isinstance(state.policy, SlaState) and state.policy.burst_until == -math.inf
    codec = StateCodec([SlaState])
    text = codec.dumps(state)
    json.loads(text)  # strict JSON: no Infinity/NaN tokens
    assert "Infinity" not in text
    assert codec.loads(text) == state


def test_step_state_and_guard_events_round_trip() -> None:
    codec = StateCodec([StepState])
    state = ControllerState(
        StepState(((1.5, 2), (7.0, 1))),
        GuardState(highs=((0.0, 3),), up_events=((1.5, 2),), last_active=9.0, started=0.0,
                   measured=True, fleet_desired=5),
    )
    assert codec.loads(codec.dumps(state)) == state


def test_codec_for_registers_the_policys_state_type(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = parse_config(CONFIG, "p.yaml", registries).pools[0]
    pc = controller_for(pool, 5.0, registries["policies"])
    state = sla_state_after_ticks(registries)
    assert codec_for(pc).loads(StateCodec([SlaState]).dumps(state)) == state


def test_an_unregistered_type_is_refused_both_ways() -> None:
    class Foreign(NamedTuple):
        x: int = 0

    with pytest.raises(StateCodecError, match="not a registered state type"):
        StateCodec().encode(ControllerState(Foreign(), GuardState()))
    document = {"$type": type_name(Foreign), "fields": {"x": 1}}
    with pytest.raises(StateCodecError, match="unknown state type"):
        StateCodec().decode(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"$type": "builtins.eval", "fields": {}}, "unknown state type"),
        ({"$type": "os.system", "fields": {"command": "true"}}, "unknown state type"),
        ({"$type": type_name(GuardState), "fields": {"highs": {"$tuple": []}}},
         "fields differ"),
        ({"$float": "1e999"}, "unexpected float"),
        ({"$tuple": [], "extra": 1}, "unexpected value"),
        ({"plain": "object"}, "unexpected value"),
    ],
)
def test_foreign_documents_are_refused(document: Any, message: str) -> None:
    with pytest.raises(StateCodecError, match=message):
        StateCodec().decode(document)


def test_a_value_of_the_wrong_type_is_refused() -> None:
    codec = StateCodec()
    fields = codec.encode(GuardState())["fields"]
    fields["last_active"] = "yesterday"
    with pytest.raises(StateCodecError, match="last_active"):
        codec.decode({"$type": type_name(GuardState), "fields": fields})
    fields["last_active"] = None
    fields["highs"] = {"$tuple": [{"$tuple": [1.0, "three"]}]}
    with pytest.raises(StateCodecError, match="highs"):
        codec.decode({"$type": type_name(GuardState), "fields": fields})


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(StateCodecError, match="not JSON"):
        StateCodec().loads(b"\x80\x04\x95 a pickle")


class Inner(NamedTuple):
    x: float = 0.0


class Outer(NamedTuple):
    inner: Inner = Inner()
    history: tuple[Inner, ...] = ()


def test_state_types_nested_in_a_registered_one_are_registered_through_its_annotations() -> None:
    """A policy's state may hold other named tuples (``sla`` holds its growth learner's) without
    listing them: what the annotations name is registered, and nothing else."""
    codec = StateCodec([Outer])
    state = ControllerState(Outer(Inner(1.5), (Inner(-math.inf),)), GuardState())
    assert codec.loads(codec.dumps(state)) == state
    with pytest.raises(StateCodecError, match="not a registered state type"):
        StateCodec().encode(ControllerState(Outer(), GuardState()))
