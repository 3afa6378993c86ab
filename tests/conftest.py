"""Shared fixtures: a real redis-server on a free loopback port, fresh registries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from autoscaler import testing
from autoscaler.registry import POLICY_GROUP, PROVIDER_GROUP, SOURCE_GROUP, Registry

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TRACES = REPO.parent / "shared" / "traces"


def pytest_configure(config: pytest.Config) -> None:
    stale = testing.stale_compiled_modules(REPO)
    if stale:
        pytest.exit(
            "stale compiled modules (an extension runs instead of the edited source): "
            + "; ".join(stale)
            + ". Rebuild with `make test` or `pip install -e .`",
            returncode=4,
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server for the whole session; yields its base URL (no database)."""
    try:
        with testing.redis_server() as url:
            yield url
    except testing.ServerStartError as exc:
        pytest.fail(f"{exc}: .ci/run installs redis-server with apt-get")


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
