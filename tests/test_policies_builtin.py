"""Table tests for the simple built-in policies and their parameter validation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.core.policy import PolicyContext, PoolSettings
from autoscaler.policies.fixed import FixedParams, FixedPolicy
from autoscaler.policies.step import StepParams, StepPolicy
from autoscaler.policies.target_tracking import TargetTrackingParams, TargetTrackingPolicy
from autoscaler.policies.threshold import ThresholdParams, ThresholdPolicy
from autoscaler.registry import Registry

POOL = PoolSettings(
    name="p",
    max_wait_s=10.0,
    target=0.99,
    min_instances=0,
    max_instances=100,
    slots_per_instance=8,
    boot_time_s=180.0,
    interval_s=5.0,
)


def ctx(
    depth: int = 0,
    in_flight: int | None = 0,
    running: int = 1,
    booting: int = 0,
    wait: float | None = None,
    arrival: float | None = None,
    completion: float | None = None,
    t: float = 0.0,
    fresh: bool = True,
    pool: PoolSettings = POOL,
) -> PolicyContext:
    obs = Observation(
        time=t,
        depth=depth,
        oldest_wait_s=wait,
        in_flight=in_flight,
        arrival_rate=arrival,
        completion_rate=completion,
        fresh=fresh,
    )
    group = GroupState("g", Market.ON_DEMAND, running + booting, booting, running)
    return PolicyContext(obs, FleetState((group,)), pool)


@pytest.mark.parametrize(
    ("params", "depth", "in_flight", "expected"),
    [
        ({}, 0, 0, 0),
        ({}, 1, 0, 1),
        ({}, 8, 8, 2),  # demand 16 / 8 slots
        ({}, 9, 8, 3),
        ({"target": 6}, 12, 0, 2),
        ({"target": 6}, 13, 0, 3),
        ({"target": 0.1}, 3, 0, 30),  # no float noise: 3 / 0.1 is 30, not 31
        ({"metric": "waiting"}, 4, 100, 1),
        ({"metric": "waiting"}, 0, 100, 0),
        ({"activation": 5}, 3, 2, 0),  # demand 5 <= activation: inactive
        ({"activation": 5}, 3, 3, 1),
    ],
)
def test_threshold(params: dict[str, Any], depth: int, in_flight: int, expected: int) -> None:
    policy = ThresholdPolicy(ThresholdParams.model_validate(params))
    rec, _ = policy.recommend(ctx(depth, in_flight), None)
    assert rec.desired == expected


def test_threshold_target_parses_from_a_string() -> None:
    assert ThresholdParams.model_validate({"target": "6"}).target == 6.0


def test_fixed() -> None:
    rec, _ = FixedPolicy(FixedParams(instances=3)).recommend(ctx(depth=500), None)
    assert (rec.desired, rec.terms["instances"]) == (3, 3)
    assert FixedParams().instances == 1


@pytest.mark.parametrize(
    ("params", "kwargs", "expected"),
    [
        ({}, {"depth": 0, "in_flight": 32, "running": 4}, 4),  # exactly on target
        ({}, {"depth": 2, "in_flight": 32, "running": 4}, 4),  # 34/32: within 10 %
        ({}, {"depth": 4, "in_flight": 32, "running": 4}, 5),  # 36/32 = 1.125
        ({}, {"depth": 0, "in_flight": 16, "running": 4}, 2),
        ({}, {"depth": 3, "in_flight": 0, "running": 0}, 1),  # from zero
        ({"tolerance": 0.0}, {"depth": 2, "in_flight": 32, "running": 4}, 5),
        ({"metric": "waiting", "target": 2}, {"depth": 12, "running": 3}, 6),
        ({"metric": "oldest_wait"}, {"wait": 10.0, "depth": 5, "running": 3}, 6),  # 10/5 s
        ({"metric": "oldest_wait"}, {"wait": 5.2, "depth": 5, "running": 3}, 3),
        ({"metric": "oldest_wait"}, {"wait": None, "depth": 24, "in_flight": 24, "running": 3}, 6),
        ({}, {"depth": 0, "in_flight": 8, "running": 2, "booting": 2}, 1),  # booting counts
    ],
)
def test_target_tracking(params: dict[str, Any], kwargs: dict[str, Any], expected: int) -> None:
    policy = TargetTrackingPolicy(TargetTrackingParams.model_validate(params))
    rec, _ = policy.recommend(ctx(**kwargs), None)
    assert rec.desired == expected


@pytest.mark.parametrize(
    ("params", "kwargs", "expected"),
    [
        ({}, {"wait": 0.0, "running": 5}, 4),  # < 0.1 x max_wait: -1
        ({}, {"wait": 3.0, "depth": 2, "running": 5}, 5),  # gap: hold
        ({}, {"wait": 5.0, "depth": 2, "running": 5}, 6),
        ({}, {"wait": 15.0, "depth": 2, "running": 5}, 7),
        ({}, {"wait": 25.0, "depth": 2, "running": 5}, 9),
        ({}, {"wait": 25.0, "depth": 2, "running": 0}, 4),
        ({}, {"wait": 0.0, "depth": 1, "running": 0}, 1),  # from zero with work
        ({}, {"wait": None, "depth": 40, "completion": 4.0, "running": 5}, 7),  # Little: 10 s
        ({}, {"wait": None, "depth": 4, "running": 5}, 5),  # nothing to estimate from
        (
            {
                "unit": "seconds",
                "steps": [
                    {"lower": 0, "upper": 30, "adjustment": 0},
                    {"lower": 30, "adjustment": 3},
                ],
            },
            {"wait": 31.0, "depth": 1, "running": 1},
            4,
        ),
    ],
)
def test_step(params: dict[str, Any], kwargs: dict[str, Any], expected: int) -> None:
    policy = StepPolicy(StepParams.model_validate(params))
    rec, _ = policy.recommend(ctx(**kwargs), policy.initial_state())
    assert rec.desired == expected


def test_step_warmup_counts_instances_in_progress() -> None:
    """AWS semantics: a breach adds only what goes beyond the adjustment still warming up."""
    policy = StepPolicy(StepParams())  # warmup: the pool's 180 s boot
    state = policy.initial_state()
    steps = [  # (t, wait, running, booting, expected)
        (0.0, 15.0, 5, 0, 7),  # +2 band
        (5.0, 15.0, 5, 2, 7),  # same band, 2 warming: nothing more
        (100.0, 15.0, 5, 2, 7),
        (120.0, 25.0, 5, 2, 9),  # +4 band: only 4 - 2 more
        (180.0, 25.0, 7, 2, 11),  # the first 2 warmed up at 180 s, the next 2 still warm: +2
    ]
    for t, wait, running, booting, expected in steps:
        rec, state = policy.recommend(
            ctx(wait=wait, depth=2, running=running, booting=booting, t=t), state
        )
        assert rec.desired == expected, (t, rec.reason)
    assert rec.terms["in_progress"] == 2


@pytest.mark.parametrize("tick", [1.0, 7.5, 20.0])
def test_step_warmup_is_seconds_on_the_observed_clock(tick: float) -> None:
    """However often the loop ticks, a held breach adds again once ``warmup`` seconds passed."""
    policy = StepPolicy(StepParams(warmup=60.0))
    state = policy.initial_state()
    running, added_at = 5, []
    t = 0.0
    while t < 130.0:
        rec, state = policy.recommend(ctx(wait=6.0, depth=2, running=running, t=t), state)
        if rec.desired > running:
            added_at.append(t)
            running = rec.desired
        t += tick
    # +1 band; the warmup ends at the first tick at or past 60 s after each scale-out.
    expected = [0.0]
    while (nxt := math.ceil((expected[-1] + 60.0) / tick) * tick) < 130.0:
        expected.append(nxt)
    assert added_at == pytest.approx(expected)


def test_step_without_warmup_adds_on_every_tick() -> None:
    policy = StepPolicy(StepParams(warmup=0))
    state = policy.initial_state()
    running = 5
    for t in (0.0, 5.0, 10.0):
        rec, state = policy.recommend(ctx(wait=15.0, depth=2, running=running, t=t), state)
        assert rec.desired == running + 2
        running = rec.desired


def test_step_warmup_defaults_to_boot_time_and_never_holds_scale_in() -> None:
    pool = dataclasses.replace(POOL, boot_time_s=30.0)
    policy = StepPolicy(StepParams())
    state = policy.initial_state()
    rec, state = policy.recommend(ctx(wait=6.0, depth=2, running=5, t=0.0, pool=pool), state)
    assert rec.desired == 6
    rec, state = policy.recommend(ctx(wait=0.0, depth=1, running=6, t=10.0, pool=pool), state)
    assert rec.desired == 5  # scale-in acts while the scale-out is still warming up
    rec, state = policy.recommend(ctx(wait=6.0, depth=2, running=5, t=20.0, pool=pool), state)
    assert rec.desired == 5  # 20 s < 30 s boot: the +1 is still in progress
    rec, state = policy.recommend(ctx(wait=6.0, depth=2, running=5, t=30.0, pool=pool), state)
    assert rec.desired == 6


def test_step_warmup_is_a_duration() -> None:
    assert StepParams.model_validate({"warmup": "3m"}).warmup == 180.0
    with pytest.raises(ValueError, match="warmup"):
        StepParams.model_validate({"warmup": -1})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"lower": 0, "upper": 2, "adjustment": 0}, {"lower": 1, "adjustment": 1}], "overlap"),
        ([{"lower": 0, "adjustment": 0}, {"lower": 3, "adjustment": 1}], "overlap"),
        ([{"lower": 2, "upper": 1, "adjustment": 1}], "greater than lower"),
        ([{"lower": 0, "upper": 1, "adjustment": 2}, {"lower": 1, "adjustment": 1}], "decrease"),
        ([{"lower": 0, "upper": 1, "adjustment": 1}, {"lower": 2, "adjustment": 3}], "decrease"),
    ],
)
def test_step_bands_are_validated(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepParams.model_validate({"steps": steps})


POOL_YAML = """\
pools:
  - name: p
    queue: {{kind: memory}}
    sla: {{max_wait: 10s}}
    capacity: {{max: 10, slots_per_instance: 8}}
    policy:
{policy}
    groups: [{{name: g, provider: local}}]
"""


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        (
            "      kind: threshold\n      targett: 6",
            "p.yaml:8: pools[0].policy.targett: unknown key",
        ),
        ("      kind: threshold\n      target: -1", "p.yaml:8: pools[0].policy.target:"),
        ("      kind: sla\n      burst_ratio: 0.5", "p.yaml:8: pools[0].policy.burst_ratio:"),
        ("      kind: nope", "unknown policy 'nope'"),
    ],
)
def test_bad_params_are_reported_with_file_and_line(
    policy: str, where: str, registries: dict[str, Registry[Any]]
) -> None:
    with pytest.raises(ConfigFileError) as err:
        parse_config(POOL_YAML.format(policy=policy), "p.yaml", registries)
    assert where in str(err.value)


def test_every_builtin_param_is_documented(registries: dict[str, Registry[Any]]) -> None:
    for name in ("fixed", "threshold", "target-tracking", "step", "sla"):
        params = registries["policies"].get(name).Params
        for field_name, field in params.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"
