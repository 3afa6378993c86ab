"""Shared fixtures: a real redis-server on a free loopback port, fresh registries."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from autoscaler.registry import POLICY_GROUP, PROVIDER_GROUP, SOURCE_GROUP, Registry

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TRACES = REPO.parent / "shared" / "traces"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server for the whole session; yields its base URL (no database)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: .ci/run installs it with apt-get")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="autoscaler-redis-")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir, "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)




@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A URL to an empty database on the session's redis-server (flushed before each test)."""
    import redis

    url = f"{redis_server}/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Commands under test (``demo``, ``run``) configure structlog process-wide, e.g. at
    level warning; without a reset, later tests' ``capture_logs`` would miss info events."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def registries() -> dict[str, Registry[Any]]:
    """Fresh registries filled from the installed entry points (tests may register more)."""
    return {
        "policies": Registry[Any](POLICY_GROUP, "policy").load_entry_points(),
        "providers": Registry[Any](PROVIDER_GROUP, "provider").load_entry_points(),
        "sources": Registry[Any](SOURCE_GROUP, "queue kind").load_entry_points(),
    }
