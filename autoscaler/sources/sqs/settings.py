"""An ``sqs`` queue: its URL, where to reach it and how to measure the oldest message's age."""

from __future__ import annotations

import re
from importlib.util import find_spec
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.config.durations import Duration

REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
AWS_HOST = re.compile(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")

AgeMethod = Literal["cloudwatch", "peek", "none"]


class SqsSettings(BaseModel):
    """Credentials come from botocore's default chain (environment, ``~/.aws`` files, SSO,
    instance or task role) or ``profile``: never from this file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_url: str = Field(description="https://sqs.<region>.amazonaws.com/<account>/<name>")
    region: str | None = Field(default=None, description="default: from the queue URL's host")
    profile: str | None = Field(default=None, min_length=1, description="a ~/.aws profile")
    endpoint_url: str | None = Field(default=None,
                                     description="SQS and CloudWatch endpoint override "
                                                 "(VPC endpoint, LocalStack, moto)")
    age: AgeMethod = Field(default="cloudwatch",
                           description="how the oldest message's age is measured")
    age_refresh: Duration = Field(default=60.0, ge=1.0,
                                  description="cloudwatch: re-read the age at most this often")

    @field_validator("queue_url", "endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (use a profile or the default chain)")
        return value.rstrip("/")

    @field_validator("queue_url")
    @classmethod
    def _queue_path(cls, value: str) -> str:
        path = urlsplit(value).path.strip("/").split("/")
        if len(path) != 2 or not path[0].isdigit() or not path[1]:
            raise ValueError(f"the queue URL's path must be /<account id>/<queue name>, got "
                             f"{value!r} (copy it from `aws sqs get-queue-url`)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name (e.g. us-east-1)")
        return value

    @model_validator(mode="after")
    def _infer_region(self) -> SqsSettings:
        if find_spec("aiobotocore") is None:  # found, not imported: loading a config stays fast
            raise ValueError("the sqs queue kind needs aiobotocore: "
                             "pip install 'queue-autoscaler[sqs]'")
        if self.region is None:
            match = AWS_HOST.match(urlsplit(self.queue_url).hostname or "")
            if match is None:
                raise ValueError("region: required when the queue URL is not "
                                 "https://sqs.<region>.amazonaws.com/...")
            object.__setattr__(self, "region", match.group(1))
        return self

    @property
    def queue_name(self) -> str:
        """The CloudWatch ``QueueName`` dimension: the URL's last path segment."""
        return self.queue_url.rsplit("/", 1)[1]

    def queue_identity(self) -> str:
        return self.queue_url

    def worker_url(self) -> str:
        """Workers receive from this queue (``autoscaler.ports.source.ConsumedQueue``)."""
        return self.queue_url
