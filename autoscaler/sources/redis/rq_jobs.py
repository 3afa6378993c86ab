"""``rq``: the queues of RQ (python-rq) read as RQ writes them; producers and workers unchanged.

Layout read (``<prefix>`` is RQ's key prefix, ``rq`` unless ``RQ_KEY_PREFIX`` is set;
``<name>`` the queue's name, the pool's ``key``):
    ``<prefix>:queue:<name>`` - a list of job ids, ``RPUSH``-ed by ``enqueue`` and popped from
    the left by workers; ``<prefix>:job:<id>`` - the job's hash, whose ``enqueued_at`` is an
    ISO-8601 UTC timestamp; ``<prefix>:wip:<name>`` - the started-job registry, a sorted set
    of running executions scored by when their worker's lease ends; ``<prefix>:finished:<name>``
    and ``<prefix>:failed:<name>`` - the finished and failed registries.

What the source measures (all in the one probe round trip, no RQ import):
    depth = ``LLEN`` of the queue list; oldest wait = clock.wall() - ``enqueued_at`` of the job
    at its head (``LINDEX 0``); in-flight = started-registry entries whose lease has not ended
    (an expired one is a dead worker's job, which RQ's own cleanup fails or requeues);
    completion counter = finished + failed registry sizes; arrival counter = completions +
    waiting + running, since every job is in exactly one of those places.

Limits: registries are trimmed by RQ's cleanup (expired results, default ``result_ttl`` 500 s):
the counter then drops and that tick has no rates. Jobs run with ``result_ttl=0`` never enter
the finished registry, so their pools have no rates (depth, wait and in-flight still hold).
Scheduled and deferred jobs enter the queue list when due: they arrive then. The head is the
job that runs next: one enqueued ``at_front`` hides the wait of older ones behind it until it
starts.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings, plain_name


class RqSettings(RedisSettings):
    """``url``, the queue's name as ``key`` (``default`` for RQ's default queue) and RQ's key
    ``prefix``."""

    key: str = Field(min_length=1, max_length=1024, description="the RQ queue's name")
    prefix: str = Field(default="rq", min_length=1, max_length=200,
                        description="RQ's key prefix (RQ_KEY_PREFIX)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return plain_name(value, "prefix")

    def probe(self) -> Probe:
        return Probe("rq", f"{self.prefix}:queue:{self.key}", self.prefix)


class RqSource(RedisKind):
    kind = "rq"
    Settings = RqSettings
