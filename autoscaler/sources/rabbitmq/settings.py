"""A ``rabbitmq`` queue: the broker's AMQP URL, the queue, and how to read what AMQP cannot."""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.ports.redis_urls import redact_url  # any scheme's user-info
from autoscaler.sources.polled import check_url

AgeMethod = Literal["management", "peek", "none"]


def _check_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    return check_url(value, what, schemes,
                     f"start with {' or '.join(s + '://' for s in schemes)} and name a host")


class RabbitMqSettings(BaseModel):
    """Inputs are hidden from validation errors: the URLs may carry passwords."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="amqp://user:password@host[:port][/vhost] or amqps://...")
    queue: str = Field(min_length=1, max_length=255, description="the queue's name")
    management_url: str | None = Field(
        default=None, description="http(s)://host:15672 of the management plugin: ready, "
                                  "unacked, consumers, head age and rates from its HTTP API")
    age: AgeMethod | None = Field(
        default=None, description="head-of-line age: management (default with "
                                  "management_url), peek (basic.get + requeue) or none")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("amqp", "amqps"), "AMQP")

    @field_validator("management_url")
    @classmethod
    def _management(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_url(value, ("http", "https"), "management").rstrip("/")

    @model_validator(mode="after")
    def _age(self) -> RabbitMqSettings:
        if self.age is None:
            object.__setattr__(self, "age", "management" if self.management_url else "none")
        if self.age == "management" and self.management_url is None:
            raise ValueError("age: management needs management_url (the management plugin's "
                             "HTTP API, e.g. http://rabbit:15672)")
        return self

    @property
    def vhost(self) -> str:
        """The AMQP URL's path, unquoted; ``/`` when it has none (RabbitMQ's default)."""
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    def credentials(self) -> tuple[str, str]:
        """User and password for the management API: its URL's, else the AMQP URL's, else
        RabbitMQ's default ``guest``/``guest``."""
        for url in (self.management_url or "", self.url):
            parts = urlsplit(url)
            if parts.username is not None:
                return unquote(parts.username), unquote(parts.password or "")
        return "guest", "guest"

    def management_base(self) -> str | None:
        """``management_url`` without its user-info (sent as basic auth instead)."""
        if self.management_url is None:
            return None
        parts = urlsplit(self.management_url)
        host = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{host}{parts.path}"

    def queue_identity(self) -> str:
        return f"{self.vhost}/{self.queue}"

    def worker_url(self) -> str:
        """Workers consume the AMQP URL (never the management API's)."""
        return self.url

    def describe(self) -> str:
        return f"{redact_url(self.url)} vhost {self.vhost!r} queue {self.queue!r}"
