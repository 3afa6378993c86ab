"""The controller-wide config: the loop's timing, metrics, the state store and leader election.

Kept apart from the pool models (``autoscaler.config.models``) so that each module stays
readable; ``models`` re-exports these names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autoscaler.config.durations import Duration, format_duration, parse_duration
from autoscaler.config.plugins import Strict, field_error
from autoscaler.ports.redis_urls import redis_url_kind, validate_redis_url


class StateStoreConfig(Strict):
    """Where each pool's controller state (guard windows, policy estimators) is persisted.

    Without ``url``, a pool on a Redis queue persists to that queue's server and other pools
    persist nothing; with ``url``, every pool persists there.
    """

    url: str | None = None
    prefix: str = Field(default="autoscaler:state:", min_length=1, max_length=200)
    ttl: Duration = Field(default=86400.0, gt=0)
    timeout: Duration = Field(default=0.5, gt=0)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Any Redis URL form the queue sources accept (``autoscaler.ports.redis_urls``); the
        message never repeats a password."""
        if value is None:
            return None
        validate_redis_url(value)
        if redis_url_kind(value) == "cluster":
            raise ValueError("Redis Cluster serves queue sources only; the state store and "
                             "leader election need a standalone, unix socket or Sentinel URL")
        return value


class LeaderElectionConfig(Strict):
    """One actor among replicas: a Redis lease (``autoscaler.runtime.leader``) or a Kubernetes
    ``coordination.k8s.io/v1`` Lease (``autoscaler.runtime.kube_lease``).

    Every replica samples, decides and exports metrics; only the lease holder resizes.
    Failover takes at most ``ttl`` plus one renewal period (``ttl / 3``).
    """

    backend: Literal["redis", "kubernetes"] = "redis"
    url: str | None = None
    """Redis backend: the server holding the lease."""
    key: str = Field(default="autoscaler:leader", min_length=1, max_length=200)
    namespace: str = Field(default="default", min_length=1, max_length=63)
    """Kubernetes backend: the Lease's namespace and name."""
    name: str = Field(default="queue-autoscaler", min_length=1, max_length=253)
    kubeconfig: str | None = Field(default=None, min_length=1)
    """Kubernetes backend: a kubeconfig path (default: in-cluster, else ~/.kube/config)."""
    context: str | None = Field(default=None, min_length=1)
    ttl: Duration = Field(default=10.0, ge=0.3, le=3600.0)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return StateStoreConfig._redis_url(value)

    @model_validator(mode="after")
    def _backend(self) -> LeaderElectionConfig:
        if self.backend == "redis" and self.url is None:
            raise field_error("leader_election", ("url",),
                              "the redis backend needs the lease server's url", None)
        if self.backend == "kubernetes" and self.ttl < 1.0:
            raise field_error("leader_election", ("ttl",),
                              "a Kubernetes Lease counts whole seconds: at least 1s", self.ttl)
        return self


class ControllerConfig(Strict):
    """Loop-wide settings."""

    interval: Duration = Field(default=1.0, ge=0.1, le=3600)
    """100 ms - 1 h: ``1ms`` (a typo for ``1m``) would overrun every tick."""
    metrics_address: str = "127.0.0.1:9464"
    sample_timeout: Duration = Field(default=0.5, gt=0)
    """Must be below ``interval``; when not given, 500 ms or half the interval if shorter."""
    drain_timeout: Duration = Field(default=30.0, ge=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_store: StateStoreConfig | None = Field(default_factory=StateStoreConfig)
    """``none`` (or null) disables persistence; see ``StateStoreConfig``."""
    leader_election: LeaderElectionConfig | None = None
    """Absent: this daemon acts alone (no lease)."""

    @model_validator(mode="before")
    @classmethod
    def _default_sample_timeout(cls, data: Any) -> Any:
        """A short interval gets a default sample timeout below it (an explicit one is checked
        against the interval in ``_timeouts``)."""
        if isinstance(data, dict) and "sample_timeout" not in data and "interval" in data:
            try:
                interval = parse_duration(data["interval"])
            except ValueError:
                return data  # the field's own error names it
            if interval < 1.0:
                return {**data, "sample_timeout": interval / 2}
        return data

    @model_validator(mode="after")
    def _timeouts(self) -> ControllerConfig:
        if self.sample_timeout >= self.interval:
            raise field_error(
                "controller", ("sample_timeout",),
                f"must be below the interval ({format_duration(self.interval)})",
                self.sample_timeout,
            )
        return self

    @field_validator("state_store", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return None if value == "none" else value

    @field_validator("metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
        return value

    @property
    def metrics_host(self) -> str:
        return self.metrics_address.rpartition(":")[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_address.rpartition(":")[2])
