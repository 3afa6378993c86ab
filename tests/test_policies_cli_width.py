"""``autoscaler policies`` at 80 columns: no line wider than the terminal, every parameter of
every built-in policy listed with its type and default, durations shown as people write them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from autoscaler.cli import main


@pytest.mark.parametrize("columns", [80, 60])
def test_policies_fit_the_terminal(columns: int) -> None:
    result = CliRunner().invoke(main, ["policies"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns
    listed = json.loads(CliRunner().invoke(main, ["policies", "--json"]).output)
    for entry in listed:
        assert f"{entry['name']}  (built-in)" in lines
        for param in entry["params"]:
            rows = [line for line in lines if line.strip().startswith(param["name"] + " ")]
            assert rows, param["name"]
    assert "Annotated" not in result.output
    assert "``" not in result.output


def test_durations_are_typed_and_shown_as_durations() -> None:
    listed = {e["name"]: e for e in json.loads(
        CliRunner().invoke(main, ["policies", "--json"]).output)}
    sla = {p["name"]: p for p in listed["sla"]["params"]}
    assert sla["budget_window"]["type"] == "duration"
    assert sla["service_time"]["type"] == "duration | none"
    text = CliRunner().invoke(main, ["policies"], env={"COLUMNS": "80"}).output
    assert any(line.split()[:4] == ["budget_window", "duration,", "default", "5m"]
               for line in text.splitlines())
