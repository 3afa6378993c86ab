"""Fixtures of the aws provider's tests: one moto server per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aws.support import CREDENTIALS, MotoCloud, moto_server, reset


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    yield from moto_server()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Credentials for botocore's default chain, and no user files or instance metadata."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    return dict(CREDENTIALS)


@pytest.fixture
def cloud(moto_url: str, aws_env: dict[str, str]) -> MotoCloud:
    reset(moto_url)
    return MotoCloud(moto_url)
