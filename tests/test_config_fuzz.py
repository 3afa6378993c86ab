"""A hypothesis fuzz of the config loader (issue 10 item 4): whatever the file holds,
``autoscaler validate`` exits 0 (valid) or 2 with ``file:line`` messages, never a traceback."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.cli import main

BASE: dict[str, Any] = {
    "controller": {"interval": "1s", "sample_timeout": "500ms", "drain_timeout": "5s"},
    "pools": [{
        "name": "chat",
        "queue": {"kind": "memory", "name": "fuzz"},
        "sla": {"max_wait": "2s", "target": 0.99},
        "capacity": {"min": 0, "max": 4, "slots_per_instance": 1, "boot_time": "1s"},
        "policy": {"kind": "threshold"},
        "groups": [{"name": "od", "provider": "local", "hourly_price": 1.5}],
    }],
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1ms", "1e308", "1.0e+308", "-5", "0", "5m", "1h", "99999h", ".inf",
                     "redis-list", "memory", "local", "", "[", "{", "&a", "*a", "\t"]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(BASE)


def _replace(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def _validate(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{text}"
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        messages = result.stderr.splitlines()
        assert messages and all(m for m in messages), "an invalid file must explain itself"
        assert any(str(path) in m for m in messages), messages


def test_the_base_of_the_fuzz_is_valid() -> None:
    """The fuzz starts from a valid file, so its invalid cases are caused by the fuzz."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base.yaml"
        path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
        result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere_gives_rc_0_or_2_with_messages(path: tuple[Any, ...],
                                                          value: Any) -> None:
    _validate(yaml.safe_dump(_replace(path, value), allow_unicode=True))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#% \n\tab1.")), max_size=80))
def test_any_text_gives_rc_0_or_2_with_messages(text: str) -> None:
    _validate(text)


def test_very_deep_nesting_is_a_message_not_a_recursion_error() -> None:
    for depth in (40, 5000):
        _validate("pools:\n  - name: " + "[" * depth + "]" * depth + "\n")
        _validate("pools:\n  - " + "{a: " * depth + "1" + "}" * depth + "\n")
