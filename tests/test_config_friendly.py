"""Config errors in plain words: no pydantic phrasing in any message, a plain sentence for each
error type pydantic reports, and durations accepted for every window and wait."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoscaler.config.friendly import message
from autoscaler.config.models import load_config, parse_config
from autoscaler.config.yaml_lines import ConfigFileError

BAD = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))
PYDANTIC = re.compile(r"Input should|String should|should match pattern|Field required|"
                      r"Extra inputs|valid tuple|validation error|type=")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_no_bad_config_message_uses_pydantic_phrasing(path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    leaked = [m for m in caught.value.messages if PYDANTIC.search(m)]
    assert leaked == []


@pytest.mark.parametrize(("error", "expected"), [
    ({"type": "tuple_type", "input": "autoscaler worker", "msg": "Input should be a valid tuple"},
     "must be a list, not a single string"),
    ({"type": "string_pattern_mismatch", "input": "Chat Pool",
      "ctx": {"pattern": "^[a-z0-9][a-z0-9_.-]{0,62}$"}, "msg": "String should match pattern"},
     "must be 1 to 63 lower-case letters, digits"),
    ({"type": "string_pattern_mismatch", "input": "x", "ctx": {"pattern": "^a+$"},
      "msg": "String should match pattern '^a+$'"}, "has the wrong form (it must match ^a+$)"),
    ({"type": "int_from_float", "input": 1.5, "msg": "..."}, "must be a whole number, not the "
                                                              "number 1.5"),
    ({"type": "less_than", "input": 2, "ctx": {"lt": 1.0}, "msg": "..."}, "must be less than 1"),
    ({"type": "too_short", "input": [], "ctx": {"min_length": 1}, "msg": "..."},
     "must have at least 1 item"),
    ({"type": "string_too_short", "input": "", "ctx": {"min_length": 1}, "msg": "..."},
     "must not be empty"),
    ({"type": "dict_type", "input": 3, "msg": "..."}, "must be a mapping (key: value), not the "
                                                      "number 3"),
    ({"type": "something_new", "msg": "Input should be a fancy thing"}, "must be a fancy thing"),
    ({"type": "value_error", "msg": "Value error, must exceed boot_time"}, "must exceed boot_time"),
])
def test_each_error_type_reads_as_a_sentence(error: dict[str, object], expected: str) -> None:
    assert message(error).startswith(expected)


def test_a_string_input_is_never_repeated_in_a_message() -> None:
    """After ${ENV} resolution a misplaced value may be a secret."""
    for kind in ("int_parsing", "float_parsing", "bool_parsing", "string_pattern_mismatch",
                 "literal_error", "tuple_type", "dict_type"):
        text = message({"type": kind, "input": "hunter2-secret", "msg": "?",
                        "ctx": {"pattern": "^x$", "expected": "'a' or 'b'"}})
        assert "hunter2" not in text, kind


CONFIG = """
pools:
  - name: chat
    queue: {{kind: memory, name: q}}
    sla: {{max_wait: 1500ms}}
    capacity: {{max: 4}}
    policy: {policy}
    groups: [{{name: g, provider: local}}]
"""


def test_sla_windows_take_durations() -> None:
    policy = ("{kind: sla, budget_window: 5m, level_window: 1m, service_window: 2m, "
              "trend_window: 1h, dispersion_window: 10m, burst_window: 30s, step_window: 20s, "
              "growth_window: 15m, feedback_window: 1h, service_time: 800ms}")
    params = parse_config(CONFIG.format(policy=policy), "p.yaml").pools[0].policy.params
    assert params.budget_window == 300.0  # type: ignore[attr-defined]
    assert params.trend_window == 3600.0  # type: ignore[attr-defined]
    assert params.service_time == 0.8  # type: ignore[attr-defined]
    with pytest.raises(ConfigFileError) as caught:
        parse_config(CONFIG.format(policy="{kind: sla, budget_window: 5 minutes}"), "p.yaml")
    assert "budget_window: invalid duration" in caught.value.messages[0]

