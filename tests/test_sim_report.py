"""``autoscaler simulate`` as a deploy answer: seeds, tick phase, pools, $/h, recommendation,
provenance and the PNG, through the real click command on small synthetic traces."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.cli.simulate import parse_seeds
from autoscaler.config.models import default_registries
from autoscaler.simulations.engine import HOURS_PER_MONTH, tick_phase
from autoscaler.simulations.traces import write_canonical
from tests.conftest import TRACES
from tests.sim_support import AUTOSCALED, poisson_trace, pool_config, run

POOLS = """
controller: {interval: 5s}
pools:
  - name: llm
    queue: {kind: memory}
    sla: {max_wait: 2s, target: 0.95}
    capacity: {min: 1, max: 20, slots_per_instance: 4, boot_time: 30s}
    policy: {kind: threshold}
    groups:
      - name: spot
        provider: local
        market: spot
        hourly_price: 1.5
        max: 6
        simulation:
          preemptions_per_hour: 6
          preemption_notice: 10s
          stockouts: [{start: 5m, end: 9m}]
      - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
  - name: small
    queue: {kind: memory}
    sla: {max_wait: 5s, target: 0.9}
    capacity: {min: 1, max: 30, slots_per_instance: 2, boot_time: 60s}
    policy: {kind: threshold, target: 2}
    groups:
      - {name: od2, provider: local, market: on-demand, hourly_price: 2.0}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "pools.yaml"
    config.write_text(POOLS)
    rng = np.random.default_rng(3)
    arrival = np.sort(rng.uniform(0, 1200, 6000))
    trace = tmp_path / "trace.csv"
    write_canonical(trace, arrival, rng.exponential(2.0, arrival.size))
    return config, trace


def simulate(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["simulate", "--json", *args])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0,2,5") == (0, 2, 5)
    assert parse_seeds("1-3, 7,2") == (1, 2, 3, 7)
    for bad, message in (("x", "'x' is not a seed"), ("3-1", "ranges go up"), (",", "no seeds")):
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_bad_seed_options_exit_2(files: tuple[Path, Path]) -> None:
    config, trace = files
    base = ["simulate", "-c", str(config), "--trace", str(trace)]
    both = CliRunner().invoke(main, [*base, "--seed", "1", "--seeds", "0-2"])
    assert both.exit_code == 2 and "give --seed N or --seeds LIST, not both" in both.output
    bad = CliRunner().invoke(main, [*base, "--seeds", "2-1"])
    assert bad.exit_code == 2 and "'2-1': seeds are non-negative and ranges go up" in bad.output


def test_seeds_give_mean_and_worst_per_pool_and_policy(files: tuple[Path, Path]) -> None:
    config, trace = files
    doc = simulate("-c", str(config), "--trace", str(trace), "--pool", "llm", "--seeds", "0-2",
                   "--warmup", "1m", "--policy", "threshold", "--policy", "threshold:target=1")
    rows = doc["results"]
    assert [(r["policy"], r["seed"]) for r in rows] == [
        (p, s) for p in ("threshold", "threshold:target=1") for s in (0, 1, 2)]
    for summary in doc["summary"][:2]:
        mine = [r for r in rows if r["policy"] == summary["policy"]]
        attainments = [r["sla_attainment"] for r in mine]
        assert summary["seeds"] == [0, 1, 2]
        assert summary["sla_attainment_worst"] == min(attainments)
        assert summary["sla_attainment_mean"] == pytest.approx(np.mean(attainments), abs=1e-4)
        assert summary["cost_usd_mean"] == pytest.approx(
            np.mean([r["cost_usd"] for r in mine]), abs=0.01)
        assert summary["meets_sla_every_seed"] == (min(attainments) >= 0.95)
    # Spot luck differs between seeds: preemptions on this spot-heavy fleet are not all equal.
    assert len({r["preemptions"] for r in rows}) > 1
    assert doc["summary"][-1]["policy"] == "lower bound" and doc["summary"][-1]["reference"]


def test_each_seed_draws_a_tick_phase_unless_one_is_given(files: tuple[Path, Path]) -> None:
    config, trace = files
    base = ["-c", str(config), "--trace", str(trace), "--pool", "small", "--seeds", "0,1,5"]
    drawn = simulate(*base)["results"]
    assert [r["tick_phase_s"] for r in drawn] == [
        round(tick_phase(s, 5.0), 3) for s in (0, 1, 5)]
    assert all(0 <= r["tick_phase_s"] < 5 for r in drawn)
    assert len({r["tick_phase_s"] for r in drawn}) == 3
    fixed = simulate(*base, "--tick-phase", "2.5s")["results"]
    assert [r["tick_phase_s"] for r in fixed] == [2.5, 2.5, 2.5]
    bad = CliRunner().invoke(main, ["simulate", *base, "--tick-phase", "5s"])
    assert bad.exit_code == 2
    assert "--tick-phase 5: must be in [0, interval 5s)" in bad.output


def test_every_pool_in_one_run_with_a_total(files: tuple[Path, Path]) -> None:
    config, trace = files
    doc = simulate("-c", str(config), "--trace", str(trace))
    assert [(r["pool"], r["policy"]) for r in doc["results"]] == [
        ("llm", "threshold"), ("small", "threshold")]
    (total,) = doc["total"]
    assert total["policy"] == "configured" and total["pools"] == ["llm", "small"]
    pools = doc["summary"][:2]
    assert total["cost_usd_mean"] == pytest.approx(sum(p["cost_usd_mean"] for p in pools),
                                                   abs=0.02)
    requests = [r["requests"] for r in doc["results"]]
    weighted = sum(r["sla_attainment"] * r["requests"] for r in doc["results"]) / sum(requests)
    assert total["sla_attainment_mean"] == pytest.approx(weighted, abs=1e-4)
    assert doc["lower_bound_cost_usd"] == pytest.approx(
        sum(s["cost_usd_mean"] for s in doc["summary"][2:]), abs=0.02)
    assert [r["pool"] for r in doc["recommendation"]] == ["llm", "small"]


def test_per_pool_traces_and_missing_ones(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, trace = files
    short = tmp_path / "short.csv"
    write_canonical(short, np.arange(0, 600, 0.5), np.full(1200, 1.0))
    doc = simulate("-c", str(config), "--trace", f"llm={trace}", "--trace", f"small={short}")
    assert [r["requests"] for r in doc["results"]] == [6000, 1200]
    missing = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace",
                                        f"llm={trace}"])
    assert missing.exit_code == 2
    assert "pool 'small' has no trace: add --trace small=PATH" in missing.output
    unknown = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                        "--pool", "nope"])
    assert unknown.exit_code == 2 and "no pool named 'nope'" in unknown.output
    absent = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                       "--trace", f"small={tmp_path / 'absent.csv'}"])
    assert absent.exit_code == 2
    assert f"--trace {tmp_path / 'absent.csv'}: no such file" in absent.output
    twice = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                      "--trace", str(short)])
    assert twice.exit_code == 2 and "give one per pool as POOL=PATH" in twice.output


def test_costs_per_hour_month_and_market_split(files: tuple[Path, Path]) -> None:
    config, trace = files
    doc = simulate("-c", str(config), "--trace", str(trace), "--pool", "llm", "--warmup", "2m",
                   "--seeds", "0-1")
    for row in doc["results"]:
        assert row["cost_spot_usd"] > 0 and row["cost_on_demand_usd"] > 0
        assert row["cost_spot_usd"] + row["cost_on_demand_usd"] == pytest.approx(
            row["cost_usd"], abs=0.011)
        counted_h = (1200 - 120) / 3600  # warm-up end to about the last arrival
        assert row["cost_per_hour_usd"] == pytest.approx(row["cost_usd"] / counted_h, rel=0.01)
        assert row["cost_per_month_usd"] == pytest.approx(
            row["cost_per_hour_usd"] * HOURS_PER_MONTH, abs=0.05)  # $/h is rounded
        # The spot group is out of stock from minute 5 to 9 and preempts often.
        assert row["launch_failures"] > 0
        assert row["preemptions"] > 0
    summary = doc["summary"][0]
    assert summary["launch_failures"] == sum(r["launch_failures"] for r in doc["results"])
    assert summary["requeued"] == sum(r["requeued"] for r in doc["results"])


def test_recommendation_is_cheapest_deployable_meeting_every_seed(
    files: tuple[Path, Path],
) -> None:
    config, trace = files
    doc = simulate("-c", str(config), "--trace", str(trace), "--pool", "llm", "--seeds", "0-1",
                   "--warmup", "1m", "--policy", "fixed:instances=1", "--policy",
                   "threshold:target=1", "--policy", "threshold:target=3", "--policy", "oracle")
    rows = {s["policy"]: s for s in doc["summary"]}
    assert rows["oracle"]["reference"] and rows["lower bound"]["reference"]
    assert not rows["fixed:instances=1"]["meets_sla_every_seed"]  # 1 instance, ~20 busy slots
    deployable = [s for s in doc["summary"][:3] if s["meets_sla_every_seed"]]
    assert deployable
    (rec,) = doc["recommendation"]
    best = min(deployable, key=lambda s: s["cost_usd_mean"])
    assert rec["policy"] == best["policy"]
    assert rec["cost_per_month_usd"] == best["cost_per_month_usd"]
    none = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                     "--pool", "llm", "--policy", "fixed:instances=1",
                                     "--policy", "oracle"])
    assert none.exit_code == 0, none.output
    assert "pool 'llm': no deployable policy meets 95.0% on seed" in none.output
    assert "closest: fixed:instances=1" in none.output


def test_table_shows_rates_split_and_recommendation(files: tuple[Path, Path]) -> None:
    config, trace = files
    result = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                       "--seeds", "0-1", "--policy", "threshold:target=1",
                                       "--policy", "oracle", "--warmup", "2m"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("$/h", "$/month", "spot $", "on-demand $", "failed launches", "re-queued",
                 "SLA worst", "oracle (reference)", "lower bound (reference)",
                 "total over 2 pools", "recommendation: pool 'llm': deploy threshold:target=1",
                 "recommendation: pool 'small': "):
        assert text in out, text


def test_results_json_records_what_produced_it(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, trace = files
    out = tmp_path / "out"
    doc = simulate("-c", str(config), "--trace", str(trace), "--seeds", "1,3", "--warmup", "90s",
                   "--out", str(out))
    written = json.loads((out / "results.json").read_text())
    prov = written.pop("provenance")
    assert written == doc
    assert prov["version"] == version("queue-autoscaler")
    assert prov["config"]["content"] == config.read_text()
    assert prov["config"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert prov["traces"] == [
        {"pool": p, "path": str(trace.resolve()),
         "sha256": hashlib.sha256(trace.read_bytes()).hexdigest()} for p in ("llm", "small")]
    assert prov["seeds"] == [1, 3] and prov["warmup_s"] == 90
    assert prov["tick_phase_fixed_s"] is None
    assert prov["tick_phases_s"] == {"1": round(tick_phase(1, 5.0), 3),
                                     "3": round(tick_phase(3, 5.0), 3)}
    for name in ("timeline-llm.png", "timeline-small.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_run_imports_no_report_or_plotting(files: tuple[Path, Path]) -> None:
    """A ``--json`` run without ``--out`` loads neither the table (rich), the PNG (matplotlib),
    the daemon's logging (structlog, which would load rich too) nor ``numpy.ma``."""
    config, trace = files
    code = (
        "import sys; from autoscaler.cli import main\n"
        f"try: main(['simulate', '-c', {str(config)!r}, '--trace', {str(trace)!r}, '--json'])\n"
        "except SystemExit as exc: assert exc.code == 0, exc.code\n"
        "heavy = ('rich', 'matplotlib', 'structlog', 'numpy.ma',\n"
        "         'autoscaler.simulations.report', 'autoscaler.simulations.plots')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"public traces not present at {TRACES}")
def test_rate_series_draws_new_arrivals_per_seed() -> None:
    doc = simulate("-c", str(TRACES / "servegen-day.yaml"), "--warmup", "600",
                   "--trace", str(TRACES / "servegen_mm-image_1d_rate.csv"), "--seeds", "0-1",
                   "--policy", "threshold:target=8")
    first, second = doc["results"]
    assert first["requests"] != second["requests"]  # a rate series is re-drawn per seed
    assert first["requests"] > 1_000_000
    assert doc["recommendation"][0]["seeds"] == [0, 1]


def test_tick_phase_shifts_the_grid_and_changes_decisions() -> None:
    """The engine ticks at phase + k * interval; phase 0 is the grid of earlier releases."""
    pool = pool_config(default_registries(), AUTOSCALED)
    trace = poisson_trace(6.0, 2.0, 6000, seed=4)
    on_grid = run(pool, trace, seed=1)
    shifted = run(pool, trace, seed=1, phase_s=3.25)
    assert on_grid.timeline.t[:3].tolist() == [5.0, 10.0, 15.0]
    assert shifted.timeline.t[:3].tolist() == [8.25, 13.25, 18.25]
    assert shifted.result.tick_phase_s == 3.25 and on_grid.result.tick_phase_s == 0.0
    # Same trace, same seed: only the phase differs, and the fleet's history with it.
    assert on_grid.result.instance_hours != shifted.result.instance_hours
