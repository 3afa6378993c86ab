"""What the Redis queue kinds share: settings and key names (URLs: ``autoscaler.ports.redis_urls``).

Key names (``<key>`` is the pool's ``key`` setting; the suffixes are plain string suffixes, not
cluster hash tags):

* ``<key>:completed`` - workers ``INCR`` it once per finished request (completion rate).
* ``<key>:enqueued``  - producers may ``INCR`` it once per enqueued request (arrival rate of
  lists and sorted sets; streams use the stream's own ``entries-added`` counter instead).
* ``<key>:processing:<consumer>`` - list kind: a worker's reliable-pop list.
* ``<key>:inflight``   - zset kind: a hash ``consumer name -> member`` of requests being served
  (and ``<key>:inflight:score``: their scores).
* ``<key>:consumers``, ``<key>:alive:<consumer>`` - worker liveness (``reclaim``).
* ``<key>:dead``       - all kinds: payloads a worker could not serve, ``LPUSH``-ed for a human.
* ``<key>:bighead``    - list kind: written by the probe itself (30 s TTL) to remember the
  time field of a head over 64 KiB instead of copying it every sample (``probe.HEAD_PREFIX``).

Every Redis kind returns the same ``sampler_key`` for one URL, so a daemon that groups pools by
that key samples every pool on a Redis server in one round trip, whatever their kinds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.ports.redis_urls import redact_url, redis_url_kind, validate_redis_url
from autoscaler.sources.redis.probe import Probe

__all__ = ["RedisSettings", "plain_name", "redact_url", "validate_redis_url"]

COMPLETED_SUFFIX = ":completed"
PROCESSING_SUFFIX = ":processing"
INFLIGHT_SUFFIX = ":inflight"
DEAD_SUFFIX = ":dead"


class RedisSettings(BaseModel):
    """Fields common to every Redis kind. Inputs are hidden from validation errors because the
    URL may carry a password."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="redis://[user:password@]host[:port][/db], rediss://, "
                     "unix:///path.sock, redis+sentinel://host,host/master or redis+cluster://")
    key: str = Field(min_length=1, max_length=1024, description="the queue's Redis key")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_redis_url(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return plain_name(value, "key")

    @model_validator(mode="after")
    def _cluster_keys(self) -> RedisSettings:
        """On Redis Cluster the probe declares each pool's key so that it is routed to the
        key's node, and reads the key's companions (``<key>:completed``, ...) there too: they
        must share its slot, which only a ``{hash tag}`` guarantees."""
        if redis_url_kind(self.url) == "cluster":
            kind = self.probe().kind
            if kind not in CLUSTER_KINDS:
                raise ValueError(f"{kind} queues do not run on Redis Cluster (the library "
                                 "itself needs one server); use a standalone or Sentinel URL")
            if not hash_tag(self.key):
                raise ValueError(
                    "on Redis Cluster the key needs a {hash tag} so that its companion keys "
                    f"share its slot, e.g. '{{{self.key}}}' or '{{{self.key}}}:requests'")
        return self

    def probe(self) -> Probe:
        """What the sampler's script reads for this pool; each kind's settings say it, so the
        sampler never needs to import the kinds."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to probe it")

    def worker_url(self) -> str:
        """Workers consume this server (``autoscaler.ports.source.ConsumedQueue``)."""
        return self.url


CLUSTER_KINDS = ("list", "zset", "stream")
"""Probe kinds whose keys all derive from the pool's key (so one hash tag keeps them in one
slot); rq, arq and Celery use fixed prefixes (``rq:job:``, ``arq:in-progress:``, ``unacked``)."""


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes when it has a non-empty ``{tag}``, else ''."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else ""


def plain_name(value: str, what: str) -> str:
    """Reject whitespace around and line breaks inside a key or group name (the probe's
    wire format separates names with newlines, and such names are typos in practice)."""
    if value != value.strip() or any(ch in value for ch in "\r\n\x00"):
        raise ValueError(f"{what} must not have surrounding whitespace or line breaks")
    return value
