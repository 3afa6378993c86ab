"""Config loading: every example validates; every bad file is rejected with file:line messages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.durations import format_duration, parse_duration
from autoscaler.config.models import load_config, parse_config
from autoscaler.config.yaml_lines import ConfigFileError

HERE = Path(__file__).parent
BAD = sorted((HERE / "bad_configs").glob("*.yaml"))
EXAMPLES = sorted((HERE.parent / "examples").glob("*.yaml"))


def _expectation(path: Path) -> tuple[int, str]:
    first = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (\d+): (.+)$", first)
    assert match, f"{path.name} must start with '# expect: LINE: text'"
    return int(match.group(1)), match.group(2)


def test_the_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_rejected_with_its_line(path: Path) -> None:
    line, text = _expectation(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    messages = result.stderr.splitlines()
    assert messages, "an invalid file must explain itself"
    field, _, detail = text.partition(": ")
    if not detail:  # file-level problems name no field
        field, detail = "", text
    expected_prefix = f"{path}:{line}: {field + ': ' if field else ''}"
    assert any(m.startswith(expected_prefix) and detail in m for m in messages), (
        f"expected a message starting {expected_prefix!r} containing {detail!r}, got {messages}"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: OK" in result.output


def test_validate_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_bytes(b"\xff\xfe not utf-8")
    missing = tmp_path / "missing.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", str(bad), str(missing)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}: not UTF-8 text" in proc.stderr
    assert f"{missing}: cannot read" in proc.stderr


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    text = (
        "pools:\n"
        "  - name: chat\n"
        "    queue: {kind: memory}\n"
        "    sla: {max_wait: soon}\n"
        "    capacity: {max: 2, min: 5}\n"
        "    groups: [{name: g, provider: local, colour: red}]\n"
    )
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "p.yaml")
    assert info.value.messages == [
        "p.yaml:4: pools[0].sla.max_wait: invalid duration 'soon': "
        "use 500ms, 2s, 5m, 1h or a number of seconds",
        "p.yaml:5: pools[0].capacity.max: must be >= min (5)",
        "p.yaml:6: pools[0].groups[0].colour: unknown key",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25),
     ("1.5s", 1.5), (" 10 s ", 10.0)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 weeks", "-1s", "1e3", "s", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 2.0, 90.0, 300.0, 3600.0, 5400.0])
def test_format_duration_round_trips(seconds: float) -> None:
    text = format_duration(seconds)
    if text.endswith("m") and "h" in text:
        hours, minutes = text[:-1].split("h")
        assert int(hours) * 3600 + int(minutes) * 60 == seconds
    else:
        assert parse_duration(text) == seconds


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "minimal.yaml"
    path.write_text(
        "pools:\n  - name: p\n    queue: {kind: memory}\n    sla: {max_wait: 1s}\n"
        "    capacity: {max: 3}\n    groups: [{name: g, provider: local}]\n"
    )
    config = load_config(path)
    pool = config.pool("p")
    assert config.controller.interval == 1.0
    assert config.controller.metrics_address == "127.0.0.1:9464"
    assert pool.sla.target == 0.99
    assert pool.capacity.initial_instances == 0
    assert pool.policy.kind == "threshold"
    assert pool.behavior.scale_down.stabilization_window == 300.0
