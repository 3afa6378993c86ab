"""A ``nats-jetstream`` queue: a server, a stream and a durable consumer on it."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.ports.redis_urls import redact_url  # any scheme's user-info
from autoscaler.sources.polled import check_url

NAME = re.compile(r"^[^\s.*>/\\]+$")
"""JetStream stream and consumer names: no whitespace, dots, wildcards or path separators."""


class NatsSettings(BaseModel):
    """Inputs are hidden from validation errors: the URL may carry a password or token."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="nats://[user:password@]host[:port] or tls://...")
    stream: str = Field(description="the JetStream stream")
    consumer: str = Field(description="the durable consumer the workers pull from")
    credentials: Path | None = Field(default=None, description="a .creds file (NGS, "
                                                               "operator mode)")
    domain: str | None = Field(default=None, min_length=1, description="JetStream domain "
                                                                       "(leaf nodes)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value, "NATS", ("nats", "tls"),
                         "be nats://host[:port] or tls://host[:port]")

    @field_validator("stream", "consumer")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a JetStream name (no spaces, '.', '*', '>', "
                             "'/' or '\\\\')")
        return value

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"credentials file {str(value)!r} does not exist")
        return value

    def queue_identity(self) -> str:
        return f"{self.stream}/{self.consumer}"

    def worker_url(self) -> str:
        """Workers pull from this server (``autoscaler.ports.source.ConsumedQueue``)."""
        return self.url

    def describe(self) -> str:
        return f"{redact_url(self.url)} stream {self.stream!r} consumer {self.consumer!r}"
