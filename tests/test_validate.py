"""``autoscaler validate`` refuses exactly what ``autoscaler run`` refuses, and touches nothing.

Each refused file goes through both commands: ``run`` (``--once --dry-run``, so a file that
wrongly passed would end after one tick, not hang) and ``validate``; both exit 2 with the same
message. ``tests/bad_configs`` are refused by the config model (provider kinds' group checks
included); a provider kind that cannot build its client is refused only when ``run`` wires the
config.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from autoscaler.cli import main
from autoscaler.cli.validate import refusal
from autoscaler.config.models import parse_config
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup
from autoscaler.registry import Registry
from autoscaler.runtime.app import run_daemon
from autoscaler.testing.fakes import FakeAccountSettings, FakeGroupSettings

HERE = Path(__file__).parent
BAD = sorted((HERE / "bad_configs").glob("*.yaml"))


def errors(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr.splitlines()


class RefusingKind:
    """A provider kind whose client cannot be built for its account (say, an unknown region):
    something only wiring the config finds, after the config model accepted it."""

    kind: ClassVar[str] = "refusing"
    AccountSettings: ClassVar[type[BaseModel]] = FakeAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = FakeGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return []

    @classmethod
    def client(cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> Any:
        raise ValueError("region local-1 is not served by this build")


WIRING = """
pools:
  - name: chat
    queue: {kind: memory, name: wiring}
    sla: {max_wait: 2s}
    capacity: {max: 4}
    groups:
      - {name: g, provider: refusing}
"""


async def test_what_run_refuses_when_wiring_validate_refuses_with_the_same_message(
    registries: dict[str, Registry[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    registries["providers"].register("refusing", RefusingKind)
    config = parse_config(WIRING, "wiring.yaml", registries=registries)
    assert await run_daemon(config, registries=registries, once=True, dry_run=True) == 2
    [run_message] = [line.removeprefix("error: ") for line in capsys.readouterr().err.splitlines()
                     if line.startswith("error: ")]
    assert "region local-1 is not served by this build" in run_message
    assert await asyncio.to_thread(refusal, config, registries) == run_message


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_what_the_config_model_refuses_both_refuse_alike(path: Path) -> None:
    run_code, run_err = errors(["run", "-c", str(path), "--once", "--dry-run"])
    code, err = errors(["validate", str(path)])
    assert (run_code, code) == (2, 2)
    assert err == run_err and err


def test_one_refused_file_fails_the_run_but_the_others_are_still_checked() -> None:
    good = HERE.parent / "examples" / "chat-redis-list.yaml"
    bad = HERE / "bad_configs" / "local_group_without_command_redis_stream.yaml"
    result = CliRunner().invoke(main, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert f"{good}: OK" in result.stdout
    assert f"{bad}:14: pools[0].groups[0].command: " in result.stderr


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
