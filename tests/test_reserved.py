"""Reserved groups: committed instances filled first, held at their count, billed whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.models import GroupConfig, parse_config
from autoscaler.config.to_core import group_spec
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.allocator import Allocator
from autoscaler.core.model import FleetState, GroupState
from autoscaler.registry import Registry
from autoscaler.simulations.traces import Trace, write_canonical
from tests.sim_support import pool_config, run


def _spec(data: dict[str, Any]) -> Any:
    return group_spec(GroupConfig.model_validate({"provider": "local", **data}))


def test_reserved_count_becomes_a_fixed_size_filled_before_spot() -> None:
    groups = [
        _spec({"name": "od", "market": "on-demand", "hourly_price": 4.0}),
        _spec({"name": "spot", "market": "spot", "hourly_price": 1.2}),
        _spec({"name": "ri", "market": "reserved", "hourly_price": 2.5, "count": 3}),
    ]
    assert (groups[2].min, groups[2].max) == (3, 3)
    allocator = Allocator(groups)
    fleet = FleetState(tuple(GroupState(g.name, g.market, desired=0, booting=0, running=0)
                             for g in groups))
    assert allocator.allocate(0, fleet) == {"ri": 3, "spot": 0, "od": 0}
    assert allocator.allocate(2, fleet) == {"ri": 3, "spot": 0, "od": 0}
    assert allocator.allocate(5, fleet) == {"ri": 3, "spot": 2, "od": 0}
    assert [g.name for g in allocator.order] == ["ri", "spot", "od"]


def test_reserved_counts_toward_the_on_demand_base() -> None:
    groups = [
        _spec({"name": "spot", "market": "spot", "hourly_price": 1.2}),
        _spec({"name": "od", "market": "on-demand", "hourly_price": 4.0}),
        _spec({"name": "ri", "market": "reserved", "hourly_price": 2.5, "count": 2}),
    ]
    fleet = FleetState(tuple(GroupState(g.name, g.market, desired=0, booting=0, running=0)
                             for g in groups))
    # Base 3: two are the reserved instances, one more goes on-demand, the rest on spot.
    assert Allocator(groups, on_demand_base=3).allocate(6, fleet) == {
        "ri": 2, "od": 1, "spot": 3}


POOL = """
controller: {{interval: 5s}}
pools:
  - name: p
    queue: {{kind: memory}}
    sla: {{max_wait: 2s}}
    capacity: {{min: {min}, max: 10}}
    groups:
{group}
"""


@pytest.mark.parametrize(("group", "message"), [
    ("      - {name: ri, provider: local, market: reserved, hourly_price: 2}",
     "pools[0].groups[0]: a group with market: reserved needs 'count'"),
    ("      - {name: ri, provider: local, market: reserved, count: 2, max: 4}",
     "pools[0].groups[0].max: a reserved group's size is its count"),
    ("      - {name: od, provider: local, market: on-demand, count: 2}",
     "pools[0].groups[0].count: only a group with market: reserved has a count"),
    ("      - {name: ri, provider: local, market: reserved, count: 0}",
     "pools[0].groups[0].count: must be a whole number"),
])
def test_reserved_config_errors_name_the_field(group: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(POOL.format(min=2, group=group), "pool.yaml")
    assert any(message in m for m in info.value.messages), info.value.messages


def test_pool_min_must_cover_the_reserved_count() -> None:
    group = "      - {name: ri, provider: local, market: reserved, count: 3}"
    with pytest.raises(ConfigFileError) as info:
        parse_config(POOL.format(min=1, group=group), "pool.yaml")
    assert any("capacity.min: must cover the groups' min sizes (they add up to 3)" in m
               for m in info.value.messages)


def test_simulator_bills_reserved_for_the_whole_run_used_or_not(
    registries: dict[str, Registry[Any]],
) -> None:
    pool = pool_config(registries, """
sla: {max_wait: 2s, target: 0.99}
capacity: {min: 2, max: 6, slots_per_instance: 1, boot_time: 0s}
policy: {kind: fixed, instances: 2}
groups:
  - {name: ri, provider: local, market: reserved, hourly_price: 1.0, count: 2}
  - {name: od, provider: local, market: on-demand, hourly_price: 4.0}
""")
    # One short request an hour in: the two reserved instances idle almost all the time.
    trace = Trace("sparse", "test", np.array([0.0, 3600.0]), np.array([1.0, 1.0]))
    result = run(pool, trace).result
    assert result.cost_on_demand_usd == 0.0
    hours = result.instance_hours / 2
    assert hours >= 1.0
    assert result.cost_reserved_usd == pytest.approx(2 * 1.0 * hours)
    assert result.cost_usd == pytest.approx(result.cost_reserved_usd)
    assert result.sla_attainment == 1.0



def test_simulate_reports_the_reserved_share(tmp_path: Path) -> None:
    config = tmp_path / "ri.yaml"
    config.write_text(POOL.format(min=2, group=(
        "      - {name: ri, provider: local, market: reserved, hourly_price: 1.0, count: 2}\n"
        "      - {name: od, provider: local, market: on-demand, hourly_price: 4.0}")))
    trace = tmp_path / "t.csv"
    write_canonical(trace, np.linspace(0, 1800, 900), np.full(900, 1.0))
    text = CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace", str(trace)])
    assert text.exit_code == 0, text.output
    assert "+ reserved $1.00 over the trace" in text.output
    doc = json.loads(CliRunner().invoke(main, ["simulate", "-c", str(config), "--trace",
                                               str(trace), "--json"]).output)
    assert doc["results"][0]["cost_reserved_usd"] == 1.0  # 2 x $1/h x the half hour
    assert doc["summary"][0]["cost_reserved_usd_mean"] == 1.0


def test_the_daemon_holds_a_reserved_group_at_its_count(tmp_path: Path) -> None:
    """``run --once`` on the local provider: no demand, yet the reserved group is launched at
    its count; the pool's floor lands on it although on-demand is cheaper per hour (the
    commitment is paid anyway)."""
    config = tmp_path / "ri.yaml"
    config.write_text(POOL.format(min=2, group=(
        "      - {name: od, provider: local, market: on-demand, hourly_price: 0.5}\n"
        "      - {name: ri, provider: local, market: reserved, hourly_price: 1.0, count: 2}")))
    done = subprocess.run([sys.executable, "-m", "autoscaler", "run", "--once", "-c",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.splitlines()[0])
    assert line["targets"] == {"ri": 2, "od": 0}
