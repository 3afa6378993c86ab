"""``redis-zset``: a sorted set scored by enqueue time (a priority-free, deduplicating queue).

Producer convention:
    ``ZADD <key> <enqueued_at> <member>`` with the score in unix seconds (float) and the member a
    JSON object (which must be unique: include a request id) optionally carrying ``service_s``.
    Producers may ``INCR <key>:enqueued`` per request for the arrival rate.

Worker convention (what ``autoscaler worker --kind redis-zset`` does):
    One script runs ``ZPOPMIN <key>`` and marks the member in flight with ``HSET
    <key>:inflight <consumer> <member>`` and ``HSET <key>:inflight:score <consumer> <score>``
    (one field per worker: a worker serves one request at a time, and a restarted worker with
    the same ``--consumer`` name serves its marked member first). Pop and mark are atomic, so
    a crash never loses a popped member; a script cannot block, so idle workers poll.
    After serving: ``MULTI; HDEL`` both ``; INCR <key>:completed; EXEC``. A worker whose
    heartbeat expired has its member put back with its score by the others
    (``autoscaler.sources.redis.reclaim``).
    Members that are not JSON objects go to ``<key>:dead``.

What the source measures:
    depth = ``ZCARD <key>``; oldest wait = clock.wall() - the lowest score
    (``ZRANGE <key> 0 0 WITHSCORES``); in-flight = ``HLEN <key>:inflight``; rates from
    ``<key>:enqueued`` / ``<key>:completed`` deltas.
"""

from __future__ import annotations

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings


class RedisZsetSettings(RedisSettings):
    """``url`` and ``key`` of a sorted-set queue."""

    def probe(self) -> Probe:
        return Probe("zset", self.key)


class RedisZsetSource(RedisKind):
    kind = "redis-zset"
    Settings = RedisZsetSettings
