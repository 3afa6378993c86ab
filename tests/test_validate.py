"""``autoscaler validate`` refuses exactly what ``autoscaler run`` refuses, and touches nothing.

Each refused file goes through both commands: ``run`` (``--once --dry-run``, so a file that
wrongly passed would end after one tick, not hang) and ``validate``; both exit 2 with the same
message. ``tests/bad_configs`` are refused by the config model, ``tests/refused_configs`` only
when ``run`` wires the config (provider settings).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoscaler.cli import main

HERE = Path(__file__).parent
REFUSED = sorted((HERE / "refused_configs").glob("*.yaml"))
BAD = sorted((HERE / "bad_configs").glob("*.yaml"))


def errors(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr.splitlines()


def test_the_refused_corpus_covers_every_redis_kind() -> None:
    assert [p.stem for p in REFUSED] == [
        f"local_without_command_redis_{kind}" for kind in ("list", "stream", "zset")
    ]


@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_what_run_refuses_when_wiring_validate_refuses_with_the_same_message(
    path: Path,
) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    run_code, run_err = errors(["run", "-c", str(path), "--once", "--dry-run"])
    assert run_code == 2
    [run_message] = [line.removeprefix("error: ") for line in run_err if line.startswith("error:")]
    assert expected in run_message
    code, err = errors(["validate", str(path)])
    assert code == 2
    assert err == [f"{path}: error: {run_message}"]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_what_the_config_model_refuses_both_refuse_alike(path: Path) -> None:
    run_code, run_err = errors(["run", "-c", str(path), "--once", "--dry-run"])
    code, err = errors(["validate", str(path)])
    assert (run_code, code) == (2, 2)
    assert err == run_err and err


def test_one_refused_file_fails_the_run_but_the_others_are_still_checked() -> None:
    good = HERE.parent / "examples" / "chat-redis-list.yaml"
    result = CliRunner().invoke(main, ["validate", str(REFUSED[0]), str(good)])
    assert result.exit_code == 2
    assert f"{good}: OK" in result.stdout
    assert f"{REFUSED[0]}: error: " in result.stderr


CONFIG = """
pools:
  - name: chat
    queue: {{kind: redis-list, url: "redis://127.0.0.1:{port}/0", key: q}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 4, slots_per_instance: 2}}
    groups:
      - {{name: local, provider: local, command: {command}}}
  - name: embed
    queue: {{kind: redis-stream, url: "redis://127.0.0.1:{port}/0", key: s, group: g}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 4}}
    groups:
      - {{name: local, provider: local, command: {command}}}
  - name: batch
    queue: {{kind: redis-zset, url: "redis://127.0.0.1:{port}/0", key: z}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 4}}
    groups:
      - {{name: local, provider: local, command: {command}}}
"""


def test_validate_connects_to_no_queue_and_starts_no_instance(tmp_path: Path) -> None:
    """The pools' Redis is a listening socket that nobody answers: a connection attempt would
    sit in its accept backlog. After validate, the backlog is empty and no instance ran."""
    marker = tmp_path / "an-instance-ran"
    command = json.dumps([sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        path = tmp_path / "policy.yaml"
        path.write_text(CONFIG.format(port=port, command=command))
        result = CliRunner().invoke(main, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        assert f"{path}: OK" in result.stdout
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    assert not marker.exists()
