"""The README agrees with the code: every YAML block is a config or a config fragment that the
code accepts, and the policy table names only parameters the policies have.

A block with ``pools`` and every account it names is loaded with the real loader (a fragment's
pool is completed from a minimal base pool first); a fragment naming accounts it does not define
is checked against ``autoscaler schema``. A block that is not a config (a sketch with
placeholders) is preceded by ``<!-- readme-test: skip (why) -->``."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from autoscaler.config.models import Config, PoolConfig, parse_config
from autoscaler.config.plugins import default_registries
from autoscaler.config.schema import config_schema

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- readme-test: skip[^>]*-->\n)?```ya?ml\n(.*?)```", re.S)
BASE_POOL: dict[str, Any] = {
    "name": "base", "queue": {"kind": "memory", "name": "readme"}, "sla": {"max_wait": "2s"},
    "capacity": {"max": 4},
    "groups": [{"name": "local", "provider": "local", "command": ["inference-server"]}],
}


def blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    found = [(text.count("\n", 0, m.start(2)) + 1, m.group(2))
             for m in BLOCK.finditer(text) if m.group(1) is None]
    assert found, "no yaml block found in the README"
    return found


def complete(fragment: dict[str, Any]) -> dict[str, Any]:
    """A fragment made a whole config: each pool's missing blocks taken from the base pool
    (a block the fragment gives is kept whole), a base pool if none."""
    config = dict(fragment)
    pools = fragment.get("pools") or [{}]
    config["pools"] = [{**copy.deepcopy(BASE_POOL), **pool} for pool in pools]
    return config


def defines_its_accounts(config: dict[str, Any]) -> bool:
    accounts = set(config.get("providers") or {})
    kinds = set(default_registries()["providers"].names())
    return all(g.get("provider") in accounts | kinds
               for p in config["pools"] for g in p.get("groups", []))


@pytest.mark.parametrize(("line", "body"), blocks(), ids=lambda v: str(v) if isinstance(v, int)
                         else "")
def test_readme_yaml_block_is_accepted_by_the_code(line: int, body: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", body):
        value = "redis://127.0.0.1:6379/0" if name.endswith("URL") else "s3cret"
        monkeypatch.setenv(name, value)
    data = yaml.safe_load(body)
    assert isinstance(data, dict), f"README.md:{line}: not a mapping"
    if set(data) <= set(PoolConfig.model_fields):  # one pool's blocks (a recommended snippet)
        data = {"pools": [data]}
    assert set(data) <= set(Config.model_fields), \
        f"README.md:{line}: not a config (mark it <!-- readme-test: skip (why) -->)"
    config = complete(data)
    if defines_its_accounts(config):
        parse_config(yaml.safe_dump(config), f"README.md:{line}")
    else:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in
                  jsonschema.Draft202012Validator(config_schema()).iter_errors(config)]
        assert errors == [], f"README.md:{line}"


def policy_rows() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Policies"):]
    section = section[section.index("| kind |"):]
    section = section[:section.index("\n\n")]  # the table only
    rows = re.findall(r"^\| `([a-z-]+)` \|[^|]*\|(.*)\|\s*$", section, re.M)
    assert len(rows) >= 5
    return rows


@pytest.mark.parametrize(("kind", "cell"), policy_rows(), ids=lambda v: v if "`" not in v
                         else "")
def test_policy_table_names_real_parameters(kind: str, cell: str) -> None:
    params = set(default_registries()["policies"].get(kind).Params.model_fields)
    named = set()
    depth = 0
    item = ""
    for char in cell + ",":  # split on commas outside parentheses; first `name` of each item
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            first = re.search(r"`([a-z_]+)`", item)
            if first is not None:
                named.add(first.group(1))
            item = ""
        else:
            item += char
    assert named <= params, f"{kind}: README names {sorted(named - params)}"
