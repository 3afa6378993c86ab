"""Task functions run by real rq workers in the job-queue source tests (imported by path)."""

from __future__ import annotations

import time

import redis


def block_until(url: str, key: str, timeout_s: float = 30.0) -> None:
    """Hold a worker until ``key`` exists on ``url``: the job stays in flight meanwhile."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    while not client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    client.close()


def noop() -> None:
    """A job that finishes at once."""
