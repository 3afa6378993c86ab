"""The simulator applies the daemon's budget guardrail (``simulations.budget``, the same
``autoscaler.core.budget`` code) and reports budget use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.models import parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.registry import Registry
from autoscaler.simulations.budget import sim_budget
from autoscaler.simulations.engine import Run, simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.traces import write_canonical
from tests.sim_support import poisson_trace

CONFIG = """
controller: {{interval: 5s}}
{top}
pools:
  - name: llm
    queue: {{kind: memory}}
    sla: {{max_wait: 2s, target: 0.95}}
    capacity: {{min: 1, max: 20, slots_per_instance: 1, boot_time: 30s}}
    policy: {{kind: threshold}}
    {budget}
    groups:
      - {{name: od, provider: local, market: on-demand, hourly_price: 4.0}}
"""

# January has 744 hours: $8,928 a month pays $12/h from the 1st, three instances at $4/h.
CAPPED = "budget: {monthly_usd: 8928, hard_cap: true}"


def run_with(registries: dict[str, Registry[Any]], budget: str = "", top: str = "") -> Run:
    config = parse_config(CONFIG.format(budget=budget, top=top), registries=registries)
    pool = config.pools[0]
    trace = poisson_trace(rate=4.0, mean_service=2.0, n=4000, seed=3)  # ~8 busy slots
    controller = controller_for(pool, 5.0, simulation_policies(trace))
    return simulate(pool, 5.0, trace, controller, label="threshold",
                    budget=sim_budget(pool, config.budget, controller, 5.0))


def most_billed(run: Run) -> int:
    return int(run.timeline.fleet.sum(axis=(1, 2)).max())


def test_the_hard_cap_holds_the_simulated_fleet(registries: dict[str, Registry[Any]]) -> None:
    free = run_with(registries)
    capped = run_with(registries, CAPPED)
    assert most_billed(free) > 3
    assert most_billed(capped) == 3  # booting, running and draining together
    [use] = capped.result.budget
    assert use.scope == "pool:llm" and use.held_ticks > 0
    assert capped.result.sla_attainment < free.result.sla_attainment
    assert use.spent_usd == pytest.approx(capped.result.cost_usd, rel=0.05)


def test_a_global_budget_caps_a_pool_too(registries: dict[str, Registry[Any]]) -> None:
    capped = run_with(registries, top=CAPPED)
    assert most_billed(capped) == 3
    assert [u.scope for u in capped.result.budget] == ["global"]


def test_alerts_without_a_cap_change_nothing(registries: dict[str, Registry[Any]]) -> None:
    free = run_with(registries)
    watched = run_with(registries, "budget: {monthly_usd: 5, alert_at: 0.5}")
    assert watched.result.cost_usd == free.result.cost_usd  # same decisions
    [use] = watched.result.budget
    assert [level for level, _t in use.alerts] == ["alert", "exhausted"]
    assert use.alerts[0][1] < use.alerts[1][1] and use.held_ticks == 0
    assert use.used_ratio > 1


def test_simulate_reports_budget_use(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(CONFIG.format(budget=CAPPED, top=""))
    rng = np.random.default_rng(2)
    arrival = np.sort(rng.uniform(0, 1200, 4000))
    trace = tmp_path / "trace.csv"
    write_canonical(trace, arrival, rng.exponential(2.0, arrival.size))
    table = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace)])
    assert table.exit_code == 0, table.output
    assert "budget: pool 'llm' threshold: pool:llm spent $" in table.output
    assert "scale-out held by the hard cap on" in table.output
    out = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace),
                                    "--json"])
    [row] = json.loads(out.output)["results"]
    [use] = row["budget"]
    assert use["scope"] == "pool:llm" and use["monthly_usd"] == 8928 and use["held_ticks"] > 0
