"""The demo's load generator and a short real run of ``autoscaler demo`` without a terminal."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.emulator.demo import demo_config
from autoscaler.emulator.loadgen import BurstPattern


def test_arrivals_are_seeded_and_bursty() -> None:
    pattern = BurstPattern(base_rate=1.0, burst_rate=10.0, first_burst=20.0, burst_every=40.0,
                           burst_length=10.0)
    first = list(pattern.arrivals(60.0, seed=3))
    assert first == list(pattern.arrivals(60.0, seed=3))
    assert first != list(pattern.arrivals(60.0, seed=4))
    offsets = [t for t, _ in first]
    assert offsets == sorted(offsets) and all(0 <= t < 60 for t in offsets)
    in_burst = sum(1 for t in offsets if 20 <= t < 30)
    before = sum(1 for t in offsets if 0 <= t < 10)
    assert in_burst > 3 * max(before, 1)  # ~100 vs ~10 expected
    assert all(s > 0 for _, s in first)


def test_pattern_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="burst_rate"):
        BurstPattern(base_rate=5.0, burst_rate=1.0)


def test_embedded_configs_validate() -> None:
    memory = demo_config("threshold", None, "k").pools[0]
    assert memory.queue.kind == "memory" and memory.groups[0].provider == "local"
    redis = demo_config("threshold", "redis://127.0.0.1:6379/0", "demo:q").pools[0]
    assert redis.queue.kind == "redis-list"
    command: Any = redis.groups[0].settings
    # No --url: the worker reads AUTOSCALER_QUEUE_URL, which the local provider sets (argv
    # is readable by every local user).
    assert command.command[-5:] == ("worker", "--kind", "redis-list", "--key", "demo:q")
    assert not any("redis://" in arg for arg in command.command)


def test_demo_runs_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "--duration", "4", "--policy", "threshold"])
    assert result.exit_code == 0, result.output
    assert "time=" in result.output and "desired=" in result.output  # plain lines, no table
    sent = int(re.search(r"requests sent:\s+(\d+)", result.output).group(1))  # type: ignore[union-attr]
    completed = int(re.search(r"completed:\s+(\d+)", result.output).group(1))  # type: ignore[union-attr]
    assert sent > 0 and completed == sent
    assert "SLA attainment:" in result.output and "wait p50/p95/max:" in result.output


def test_demo_on_redis_serves_every_request(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """With REDIS_URL: real ``autoscaler worker`` processes (2 slots each, from the pool's
    AUTOSCALER_SLOTS) serve every request the load generator sent."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    result = CliRunner().invoke(main, ["demo", "--duration", "4", "--policy", "threshold"])
    assert result.exit_code == 0, result.output
    assert "Redis list, worker" in result.stdout  # rich wraps the line
    sent = int(re.search(r"requests sent:\s+(\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    completed = int(re.search(r"completed:\s+(\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert sent > 0 and completed == sent
