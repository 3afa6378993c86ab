"""The ``aws`` kind's config keys (the issue's contract) and the check for its optional SDK.

Importing this module imports no SDK: ``autoscaler validate`` and the simulator stay fast, and
a machine without the ``aws`` extra can still validate a config (``check_group`` then says
which extra to install, as ``run`` would).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.ports.provider import missing_extra

REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


class AwsAccountSettings(BaseModel):
    """One AWS account and region. Credentials come from botocore's default chain
    (environment, ``~/.aws`` files, SSO, instance or task role) or the named ``profile``:
    never from this file, so none can leak from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(description="e.g. us-east-1; one client per account and region")
    profile: str | None = Field(default=None, min_length=1,
                                description="a profile of ~/.aws/config (default chain if unset)")
    endpoint_url: str | None = Field(default=None,
                                     description="override of the Auto Scaling endpoint")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name (e.g. us-east-1)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http(s) URL, e.g. https://autoscaling.us-east-1.amazonaws.com")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (use a profile or the default chain)")
        return value


class AwsGroupSettings(BaseModel):
    """The key of an ``aws`` group: the Auto Scaling group's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    asg: str = Field(min_length=1, max_length=255,
                     description="the Auto Scaling group's name (not its ARN)")

    @field_validator("asg")
    @classmethod
    def _name(cls, value: str) -> str:
        if value.startswith("arn:") or ":" in value:
            raise ValueError("the Auto Scaling group's name, not its ARN (names have no ':')")
        return value


def missing_sdk() -> str:
    """'' when aiobotocore is importable, else the message naming the extra to install."""
    return missing_extra("the aws provider", "aws", ("aiobotocore",)) or ""
