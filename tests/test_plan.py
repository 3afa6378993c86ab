"""``autoscaler plan`` end to end: candidates, frontier, snippet, reserved advice, cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.simulations.options import Option, advise_reserved, parse_option
from autoscaler.simulations.specs import SpecError
from autoscaler.simulations.traces import write_canonical

CONFIG = """
controller: {interval: 5s}
pools:
  - name: llm
    queue: {kind: memory}
    sla: {max_wait: 2s, target: 0.95}
    capacity: {min: 1, max: 40, slots_per_instance: 4, boot_time: 30s}
    policy: {kind: threshold}
    groups:
      - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
"""

SMALL = "name=small,slots=4,price=1.0,boot=30s"
BIG = ("name=big,slots=16,price=3.0,boot=60,spot_price=1.2,preemptions_per_hour=0.5,"
       "reserved_price=1.0")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "plan.yaml"
    config.write_text(CONFIG)
    rng = np.random.default_rng(5)
    arrival = np.sort(rng.uniform(0, 1800, 9000))  # 5 req/s for half an hour
    trace = tmp_path / "trace.csv"
    write_canonical(trace, arrival, rng.exponential(2.0, arrival.size))  # ~10 busy slots
    return config, trace


def _plan(config: Path, trace: Path, cache: Path, *extra: str) -> Any:
    result = CliRunner().invoke(main, [
        "plan", "-c", str(config), "--trace", str(trace), "--option", SMALL, "--option", BIG,
        "--policy", "threshold", "--policy", "sla", "--seeds", "0-1", "--warmup", "2m",
        "--cache", str(cache), "--workers", "1", *extra,
    ])
    assert result.exit_code == 0, result.output
    return result


def test_json_shape_best_frontier_and_a_snippet_that_validates(
    files: tuple[Path, Path], tmp_path: Path,
) -> None:
    config, trace = files
    out = tmp_path / "out"
    doc = json.loads(_plan(config, trace, tmp_path / "cache", "--json", "--out",
                           str(out)).output)
    assert list(doc)[:2] == ["candidates", "best"]
    rows = doc["candidates"]
    assert [(r["option"], r["policy"]) for r in rows] == [
        ("small", "threshold"), ("small", "sla"), ("big", "threshold"), ("big", "sla")]
    for row in rows:
        assert list(row)[:5] == ["option", "policy", "cost_usd", "sla_attainment_min",
                                 "meets_sla"]
        assert row["meets_sla"] == (row["sla_attainment_min"] >= 0.95)
    meeting = [r for r in rows if r["meets_sla"]]
    assert meeting, rows
    best = doc["best"]
    assert best["cost_usd"] == min(r["cost_usd"] for r in meeting)
    front = [r for r in rows if r["pareto"]]
    assert any(r["option"] == best["option"] and r["policy"] == best["policy"] for r in front)
    for r in rows:  # nothing off the frontier beats a frontier point on both axes
        if not r["pareto"]:
            assert any(f["cost_usd"] <= r["cost_usd"]
                       and f["sla_attainment_min"] >= r["sla_attainment_min"] for f in front)
    # The big option reserves what its demand covers past break-even (1.0 / 1.2 = 83 %).
    [advice] = doc["reserved"]
    assert advice["option"] == "big" and advice["break_even_share"] == pytest.approx(0.8333)
    big = next(r for r in rows if r["option"] == "big")
    assert big["reserved_instances"] == advice["count"]
    assert (big["cost_reserved_usd"] > 0) == (advice["count"] > 0)
    # The snippet, spliced into the user's pool, is accepted by `autoscaler validate`.
    snippet = yaml.safe_load(doc["snippet"])
    assert set(snippet) == {"capacity", "groups", "policy"}
    assert (out / "snippet.yaml").read_text() == doc["snippet"]
    assert (out / "frontier.png").stat().st_size > 10_000
    deployed = yaml.safe_load(CONFIG)
    deployed["pools"][0].update(snippet)
    path = tmp_path / "deployed.yaml"
    path.write_text(yaml.safe_dump(deployed))
    checked = CliRunner().invoke(main, ["validate", str(path)])
    assert checked.exit_code == 0, checked.output


def test_reserved_snippet_validates(files: tuple[Path, Path], tmp_path: Path) -> None:
    """A plan that recommends reserved capacity: the snippet carries it and validates."""
    config, trace = files
    result = CliRunner().invoke(main, [
        "plan", "-c", str(config), "--trace", str(trace), "--json", "--no-cache",
        "--option", "name=ri,slots=4,price=2.0,boot=30s,reserved_price=0.5",
        "--policy", "threshold", "--warmup", "2m", "--workers", "1",
    ])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    count = doc["reserved"][0]["count"]
    assert count >= 1  # ~2.5 instances busy all the time, reserved at a quarter of the price
    snippet = yaml.safe_load(doc["snippet"])
    reserved = [g for g in snippet["groups"] if g["market"] == "reserved"]
    assert reserved == [{"name": "ri-reserved", "provider": "local", "market": "reserved",
                         "hourly_price": 0.5, "count": count}]
    assert snippet["capacity"]["min"] >= count
    deployed = yaml.safe_load(CONFIG)
    deployed["pools"][0].update(snippet)
    path = tmp_path / "deployed.yaml"
    path.write_text(yaml.safe_dump(deployed))
    assert CliRunner().invoke(main, ["validate", str(path)]).exit_code == 0


def test_second_run_is_served_from_the_cache(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, trace = files
    cache = tmp_path / "cache"
    first = json.loads(_plan(config, trace, cache, "--json").output)
    stored = sorted(p.name for p in cache.glob("*.json"))
    assert len(stored) == 2 * 2 * 2  # options x policies x seeds
    again = _plan(config, trace, cache)
    assert "8 of 8 simulations from the cache" in again.stderr
    assert json.loads(_plan(config, trace, cache, "--json").output) == first
    assert sorted(p.name for p in cache.glob("*.json")) == stored
    # An interrupted sweep resumes: drop half the entries, only those run again.
    for path in [cache / name for name in stored[:4]]:
        path.unlink()
    resumed = _plan(config, trace, cache)
    assert "4 of 8 simulations from the cache" in resumed.stderr
    # A changed trace is a different key.
    write_canonical(trace, np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    changed = _plan(config, trace, cache)
    assert "from the cache" not in changed.stderr


def test_reserved_advice_break_even() -> None:
    option = Option("x", 8, price=2.0, boot_s=60, reserved_price=1.0)  # break-even: 50 %
    demand = np.array([0.5, 1.5, 1.5, 2.5, 3.2, 1.2, 2.1, 0.2])
    # needing >= 1: 6/8, >= 2: 3/8, >= 3: 1/8 -> only the first pays off
    advice = advise_reserved(option, [demand])
    assert advice is not None and advice.count == 1
    assert advice.coverage[:3] == (0.75, 0.375, 0.125)
    # Against spot at $1.1/h the displaced price is spot's: 91 % break-even, none pays.
    spot = Option("x", 8, price=2.0, boot_s=60, spot_price=1.1, reserved_price=1.0)
    assert advise_reserved(spot, [demand]).count == 0  # type: ignore[union-attr]
    # Several traces: the smallest commitment any of them justifies.
    assert advise_reserved(option, [demand, np.full(8, 3.5)]).count == 1  # type: ignore[union-attr]
    assert advise_reserved(Option("y", 8, 2.0, 60), [demand]) is None


@pytest.mark.parametrize(("text", "message"), [
    ("name=a,slots=8,price=1", "missing boot"),
    ("name=a,slots=0,price=1,boot=60", "slots: '0' is not a whole number >= 1"),
    ("name=a,slots=8,price=1,boot=60,colour=red", "unknown key 'colour'"),
    ("name=A B,slots=8,price=1,boot=60", "lowercase letters"),
    ("name=a,slots=8,price=1,boot=60,preemptions_per_hour=1", "needs spot_price"),
    ("name=a,slots=8,price=-1,boot=60", "price: '-1' is not a number >= 0"),
])
def test_bad_options_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_option(text)


def test_bad_input_exits_2_without_traceback(files: tuple[Path, Path]) -> None:
    config, trace = files
    result = CliRunner().invoke(main, [
        "plan", "-c", str(config), "--trace", str(trace), "--option", SMALL,
        "--policy", "threshold:nonsense=1", "--no-cache",
    ])
    assert result.exit_code == 2
    assert "threshold:nonsense=1" in result.output and "Traceback" not in result.output


def test_a_broken_config_is_reported_with_its_line(tmp_path: Path,
                                                   files: tuple[Path, Path]) -> None:
    _, trace = files
    config = tmp_path / "broken.yaml"
    config.write_text(CONFIG.replace("max: 40", "max: -3"))
    result = CliRunner().invoke(main, [
        "plan", "-c", str(config), "--trace", str(trace), "--option", SMALL, "--no-cache",
    ])
    assert result.exit_code == 2
    assert f"{config}:7: pools[0].capacity.max" in result.output, result.output
