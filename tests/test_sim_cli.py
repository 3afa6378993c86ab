"""``autoscaler simulate`` / ``tune`` end to end through the real click commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.simulations.traces import write_canonical
from tests.conftest import EXAMPLES, TRACES

CONFIG = """
controller: {interval: 5s}
pools:
  - name: llm
    queue: {kind: memory}
    sla: {max_wait: 2s, target: 0.95}
    capacity: {min: 1, max: 20, slots_per_instance: 4, boot_time: 30s}
    policy: {kind: threshold}
    groups:
      - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""

KEYS = ["policy", "requests", "sla_attainment", "wait_p50_s", "wait_p95_s", "wait_p99_s",
        "wait_max_s", "instance_hours", "cost_usd", "scale_actions", "preemptions"]
ADDED_KEYS = ["pool", "seed", "tick_phase_s", "cost_spot_usd", "cost_on_demand_usd",
              "cost_per_hour_usd", "cost_per_month_usd", "launch_failures", "requeued",
              "unserved", "cost_reserved_usd", "reference"]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "sim.yaml"
    config.write_text(CONFIG)
    rng = np.random.default_rng(2)
    arrival = np.sort(rng.uniform(0, 1200, 6000))
    trace = tmp_path / "trace.csv"
    write_canonical(trace, arrival, rng.exponential(2.0, arrival.size))
    return config, trace


def test_simulate_json_shape_and_outputs(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, trace = files
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "simulate", "-c", str(config), "--trace", str(trace), "--json", "--warmup", "2m",
        "--policy", "threshold", "--policy", "threshold:target=2", "--policy", "oracle",
        "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    # The original keys keep their place; later additions follow them.
    assert list(doc) == ["results", "lower_bound_cost_usd", "summary", "total", "recommendation"]
    assert [r["policy"] for r in doc["results"]] == ["threshold", "threshold:target=2", "oracle"]
    for row in doc["results"]:
        assert list(row) == KEYS + ADDED_KEYS
        assert 0 < row["requests"] < 6000  # warm-up excluded
        assert row["cost_usd"] >= doc["lower_bound_cost_usd"] > 0
    written = json.loads((out / "results.json").read_text())
    assert written.pop("provenance")["warmup_s"] == 120
    assert written == doc
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_table_defaults_to_configured_policy(files: tuple[Path, Path]) -> None:
    config, trace = files
    result = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert "threshold" in result.output and "lower bound cost" in result.output


@pytest.mark.parametrize(("spec", "message"), [
    ("threshold:target=oops", "policy spec 'threshold:target=oops': target:"),
    ("threshold:nope=1", "nope: unknown key"),
    ("nosuch", "unknown policy 'nosuch'"),
    ("threshold:target", "'target' is not key=value"),
])
def test_bad_policy_spec_is_a_clear_error(
    files: tuple[Path, Path], spec: str, message: str
) -> None:
    config, trace = files
    result = CliRunner().invoke(
        main, ["simulate", "-c", str(config), "--trace", str(trace), "--policy", spec]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_bad_trace_row_exits_with_file_and_line(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = files
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,service_s\n0,1\n1,one\n")
    result = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: column 'service_s': not a number" in result.output


def test_tune_finds_cheapest_setting_and_frontier(files: tuple[Path, Path]) -> None:
    config, trace = files
    result = CliRunner().invoke(main, [
        "tune", "-c", str(config), "--trace", str(trace), "--policy", "threshold",
        "--grid", "target=1,2,4,8,16", "--workers", "2", "--json",
    ])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    trials = doc["trials"]
    assert [t["params"]["target"] for t in trials] == [1, 2, 4, 8, 16]
    meeting = [t for t in trials if t["sla_attainment"] >= 0.95]
    assert doc["best"]["cost_usd"] == min(t["cost_usd"] for t in meeting)
    costs = [t["cost_usd"] for t in doc["pareto"]]
    attainments = [t["sla_attainment"] for t in doc["pareto"]]
    assert costs == sorted(costs) and attainments == sorted(attainments)


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"public traces not present at {TRACES}")
def test_example_gpu_fleet_on_real_trace() -> None:
    result = CliRunner().invoke(main, [
        "simulate", "-c", str(EXAMPLES / "gpu-fleet-sim.yaml"), "--json", "--warmup", "600",
        "--trace", str(TRACES / "AzureLLMInferenceTrace_conv.csv"), "--policy", "oracle",
    ])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["results"][0]
    assert row["requests"] == 16499 and row["sla_attainment"] >= 0.99
