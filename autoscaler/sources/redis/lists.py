"""``redis-list``: a Redis list used as a FIFO with reliable pop.

Producer convention:
    ``LPUSH <key> <json>`` where ``<json>`` is an object carrying ``enqueued_at`` (unix seconds,
    float, the producer's wall clock) and optionally ``service_s`` (seconds of work, used by the
    worker emulator) plus any fields of the request itself. Producers may also
    ``INCR <key>:enqueued`` per request, which gives the arrival rate.

Worker convention (what ``autoscaler worker --kind redis-list`` does):
    ``BLMOVE <key> <key>:processing:<consumer> RIGHT LEFT <timeout>`` takes the oldest request
    and parks it on the worker's own processing list; after serving it, ``MULTI; LREM
    <key>:processing:<consumer> 1 <payload>; INCR <key>:completed; EXEC``. Workers register in
    ``<key>:consumers`` with a heartbeat; a dead worker's list is moved back to the RIGHT end of
    ``<key>`` by the others (``autoscaler.sources.redis.reclaim``).
    A payload that is not a JSON object (or has a bad ``service_s``) is moved to ``<key>:dead``
    instead, without counting it as completed.

What the source measures:
    depth = ``LLEN <key>``; oldest wait = clock.wall() - ``enqueued_at`` of ``LINDEX <key> -1``
    (``None`` if that payload is not such JSON: the depth is still reported); in-flight =
    the sum of ``LLEN <key>:processing:<c>`` over ``SMEMBERS <key>:consumers``;
    rates from ``<key>:enqueued`` / ``<key>:completed`` deltas.
"""

from __future__ import annotations

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings


class RedisListSettings(RedisSettings):
    """``url`` and ``key`` of a list queue."""

    def probe(self) -> Probe:
        return Probe("list", self.key)


class RedisListSource(RedisKind):
    kind = "redis-list"
    Settings = RedisListSettings
