"""A third-party policy found through a real ``autoscaler.policies`` entry point.

Instead of ``pip install`` (slow), the test writes the dist-info that pip would write for
``tests/plugins/example_policy`` into a temporary directory on ``sys.path``;
``importlib.metadata`` then discovers the entry point exactly as it would for an installed
package, and the policy runs end to end through the config loader and ``PoolController``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.models import parse_config
from autoscaler.config.to_core import controller_for
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.registry import POLICY_GROUP, Registry

PLUGIN = Path(__file__).parent / "plugins" / "example_policy"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dist = tmp_path / "autoscaler_example_policy-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: autoscaler-example-policy\nVersion: 0.1.0\n"
    )
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][POLICY_GROUP]
    listed = "".join(f"{name} = {target}\n" for name, target in declared.items())
    (dist / "entry_points.txt").write_text(f"[{POLICY_GROUP}]\n{listed}")
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    return dist


CONFIG = """\
pools:
  - name: p
    queue: {kind: memory}
    sla: {max_wait: 10s}
    capacity: {min: 0, max: 6}
    policy:
      kind: half-queue
      per_instance: %s
    groups: [{name: spot, provider: local, market: spot}, {name: od, provider: local}]
"""


def fresh_registry() -> Registry[Any]:
    return Registry[Any](POLICY_GROUP, "policy").load_entry_points()


def test_plugin_runs_through_config_and_controller(
    installed_plugin: Path, registries: dict[str, Registry[Any]]
) -> None:
    registries = {**registries, "policies": fresh_registry()}
    assert "half-queue" in registries["policies"]
    pool = parse_config(CONFIG % 3, "p.yaml", registries).pools[0]
    pc = controller_for(pool, 1.0, registries["policies"])
    fleet = FleetState(
        (GroupState("spot", Market.SPOT, 1, 0, 1), GroupState("od", Market.ON_DEMAND, 0, 0, 0))
    )
    state = pc.initial_state()
    decision, state = pc.decide(Observation(time=0.0, depth=9), fleet, state)
    assert decision.desired == 3
    assert dict(decision.targets) == {"spot": 3, "od": 0}
    assert "half-queue" in decision.reason
    state = pc.applied(state, decision)
    fleet = FleetState(
        (GroupState("spot", Market.SPOT, 3, 2, 1), GroupState("od", Market.ON_DEMAND, 0, 0, 0))
    )
    decision, state = pc.decide(Observation(time=1.0, depth=100), fleet, state)
    assert decision.desired == 5  # the guards apply: +4 per 15 s from the 1 at t=0
    assert state.policy == 2


def test_plugin_params_are_validated_with_file_and_line(
    installed_plugin: Path, registries: dict[str, Registry[Any]]
) -> None:
    registries = {**registries, "policies": fresh_registry()}
    with pytest.raises(ConfigFileError, match=r"p.yaml:8: pools\[0\].policy.per_instance"):
        parse_config(CONFIG % 0, "p.yaml", registries)


def test_cli_lists_builtins_and_the_plugin(installed_plugin: Path) -> None:
    result = CliRunner().invoke(main, ["policies", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.output)}
    assert {"fixed", "threshold", "target-tracking", "step", "sla", "half-queue"} <= set(listed)
    plugin = listed["half-queue"]
    assert plugin["builtin"] is False
    assert plugin["distribution"] == "autoscaler-example-policy"
    assert {p["name"]: p["default"] for p in plugin["params"]} == {"per_instance": 2, "spare": 0}
    threshold = {p["name"]: p for p in listed["threshold"]["params"]}
    assert threshold["metric"]["default"] == "demand"
    assert threshold["metric"]["type"] == "waiting|demand"
    table = CliRunner().invoke(main, ["policies"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "half-queue" in table.output and "scale_in_margin" in table.output
