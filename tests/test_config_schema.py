"""``autoscaler schema``: a valid draft 2020-12 schema that every example config passes and that
catches what an editor should underline (unknown keys in core and plugin blocks, unknown kinds,
malformed durations)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.models import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "autoscaler.schema.json"
    result = CliRunner().invoke(main, ["schema", "-o", str(out), "--indent", "0"])
    assert result.exit_code == 0, result.output
    schema = json.loads(out.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    queue_kinds = {v["$ref"].rsplit("__", 1)[1] for v in schema["$defs"]["QueueBlock"]["oneOf"]}
    assert {"memory", "redis-list", "redis-stream", "redis-zset"} <= queue_kinds


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(validator: jsonschema.Draft202012Validator,
                                 path: Path) -> None:
    load_config(path)  # and the loader agrees it is valid
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def _pool(d: dict[str, Any]) -> dict[str, Any]:
    pool: dict[str, Any] = d["pools"][0]
    return pool


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown pool key": lambda d: _pool(d).update(colour="red"),
    "unknown queue key": lambda d: _pool(d)["queue"].update(bogus=1),
    "unknown queue kind": lambda d: _pool(d)["queue"].update(kind="kafka"),
    "unknown group key": lambda d: _pool(d)["groups"][0].update(bogus=1),
    "unknown policy kind": lambda d: _pool(d).update(policy="nope"),
    "unknown policy parameter": lambda d: _pool(d).update(policy={"kind": "sla", "bogus": 1}),
    "malformed duration": lambda d: _pool(d)["sla"].update(max_wait="5 minutes"),
    "unknown account kind": lambda d: d.update(providers={"a": {"kind": "ibm"}}),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_schema_rejects_what_validate_rejects(validator: jsonschema.Draft202012Validator,
                                              name: str) -> None:
    data = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "chat-redis-list.yaml").read_text()))
    assert list(validator.iter_errors(data)) == []
    MUTATIONS[name](data)
    assert list(validator.iter_errors(data)) != [], name


def test_durations_and_policy_names_as_people_write_them(
    validator: jsonschema.Draft202012Validator,
) -> None:
    data = yaml.safe_load((ROOT / "examples" / "chat-redis-list.yaml").read_text())
    _pool(data)["sla"]["max_wait"] = "1500ms"
    _pool(data)["policy"] = "sla"
    data["controller"] = {"interval": 2, "drain_timeout": "1m"}
    assert list(validator.iter_errors(data)) == []
