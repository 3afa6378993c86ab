"""``arq``: the queue of arq read as arq writes it; producers and workers unchanged.

Layout read:
    ``<key>`` (``arq:queue`` unless the app names its queue) - a sorted set of job ids scored
    by when each job may run, in unix MILLISECONDS (the enqueue time, or the deferred time);
    ``arq:in-progress:<id>`` - set by the worker that runs the job, which stays in the sorted
    set until it finishes.

What the source measures (all in the one probe round trip, no arq import):
    due = jobs scored at or before the Redis server's clock; in-flight = due jobs with an
    in-progress key, found by walking the due jobs from the oldest (workers start the oldest
    first) until 64 waiting ones in a row were seen; depth = due - in-flight; oldest wait =
    clock.wall() - the score of the oldest due job that is not running. Deferred jobs (score
    in the future) are not waiting and are not counted.

Rates: arq keeps no counters. Producers may ``INCR <key>:enqueued`` and workers (an
``after_job_end`` hook) ``INCR <key>:completed``, as for the other Redis kinds; without them the
pool has no rates, which the ``sla`` policy treats as unknown.
"""

from __future__ import annotations

from pydantic import Field

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings


class ArqSettings(RedisSettings):
    """``url`` and the queue's sorted-set ``key`` (``arq:queue`` by default)."""

    key: str = Field(default="arq:queue", min_length=1, max_length=1024,
                     description="arq's queue name (its sorted set)")

    def probe(self) -> Probe:
        return Probe("arq", self.key)


class ArqSource(RedisKind):
    kind = "arq"
    Settings = ArqSettings
