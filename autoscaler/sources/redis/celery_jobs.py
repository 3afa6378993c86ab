"""``celery``: a Celery queue on the Redis broker (kombu's Redis transport), read as it is.

Layout read:
    ``<key>`` (``celery`` for the default queue) - a list of JSON messages, ``LPUSH``-ed by
    producers and popped from the right by workers; ``<key>\\x06\\x16<p>`` - its priority
    sub-queues (the transport's priority steps, 3/6/9 by default; 1-9 are all read);
    ``unacked`` - a hash of the messages delivered to workers and not yet acknowledged, each
    ``[message, exchange, routing_key]``.

What the source measures (all in the one probe round trip, no Celery import):
    depth = the sum of the lists' lengths; in-flight (setting ``in_flight``): ``routing`` (the
    default) = ``unacked`` entries whose routing key is ``<key>`` (Celery's default routing;
    each unacked message is copied into the script once per tick, and above 1000 of them the
    count is unknown), ``all`` = every unacked message on that database (one ``HLEN``: exact
    when the database carries only this queue, and cheap whatever the payload size),
    ``none`` = unknown; oldest wait = clock.wall() - the oldest ``enqueued_at`` header among the
    sub-queues' heads.

Celery messages carry NO enqueue time. The wait is known only when producers add one, e.g.
``task.apply_async(args, headers={"enqueued_at": time.time()})`` (or once for every task in a
``before_task_publish`` signal handler: ``headers["enqueued_at"] = time.time()``). Without it
the depth still counts and the wait is unknown. Rates: Celery keeps no counters; producers may
``INCR <key>:enqueued`` and workers (``task_postrun``) ``INCR <key>:completed``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings, plain_name


class CelerySettings(RedisSettings):
    """``url``, the queue's name as ``key`` and the transport's unacked hash."""

    key: str = Field(default="celery", min_length=1, max_length=1024,
                     description="the Celery queue's name")
    unacked_key: str = Field(default="unacked", min_length=1, max_length=200,
                             description="kombu's unacked hash (transport option unacked_key)")

    in_flight: Literal["routing", "all", "none"] = Field(
        default="routing", description="how in-flight messages are counted (see the module)")

    @field_validator("unacked_key")
    @classmethod
    def _unacked(cls, value: str) -> str:
        return plain_name(value, "unacked_key")

    def probe(self) -> Probe:
        kind = {"routing": "celery", "all": "celery-all", "none": "celery-none"}[self.in_flight]
        return Probe(kind, self.key, self.unacked_key)  # type: ignore[arg-type]


class CelerySource(RedisKind):
    kind = "celery"
    Settings = CelerySettings
