"""``redis-stream``: a Redis stream read by one consumer group.

Producer convention:
    ``XADD <key> * field value ...`` with auto-generated IDs (their millisecond part is the
    enqueue time on the Redis server's clock) and an optional ``service_s`` field. No separate
    arrival counter is needed: the stream's ``entries-added`` is one. Trim with ``MAXLEN ~`` if
    the stream must stay bounded (acknowledged entries are not deleted by the worker).

Worker convention (what ``autoscaler worker --kind redis-stream`` does):
    ``XGROUP CREATE <key> <group> 0 MKSTREAM`` (ignoring BUSYGROUP), then first its own pending
    entries (``XREADGROUP ... STREAMS <key> 0``, so a restarted consumer finishes what it had),
    then ``XREADGROUP GROUP <group> <consumer> COUNT 1 BLOCK <ms> STREAMS <key> >``. After
    serving: ``MULTI; XACK <key> <group> <id>; INCR <key>:completed; EXEC``. An entry with a bad
    ``service_s`` is acknowledged and its fields are ``LPUSH``-ed to ``<key>:dead`` as JSON.
    The pending entries of a worker whose heartbeat expired are ``XCLAIM``-ed by another, which
    serves them next (``autoscaler.sources.redis.reclaim``).

What the source measures:
    waiting = entries not yet delivered to the group: the group's ``lag`` (XINFO GROUPS, Redis
    >= 7). When Redis cannot compute the lag (Redis < 7, or entries deleted after the group's
    last-delivered-id) the undelivered entries are counted with ``XRANGE <key>
    (<last-delivered-id> + COUNT 10000``, so the depth saturates at 10 000 in that case. When
    the group does not exist yet, every entry counts as waiting (a worker creates the group at
    ID 0). Oldest wait = clock.wall() - the millisecond timestamp of the first undelivered
    entry's ID. In-flight = the group's pending count. Arrival rate = delta of
    ``entries-added`` (XINFO STREAM; falls back to ``<key>:enqueued`` on Redis < 7); completion
    rate = delta of ``<key>:completed``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from autoscaler.sources.redis.kind import RedisKind
from autoscaler.sources.redis.probe import Probe
from autoscaler.sources.redis.settings import RedisSettings, plain_name


class RedisStreamSettings(RedisSettings):
    """``url``, ``key`` and the consumer ``group`` the workers read with."""

    group: str = Field(min_length=1, max_length=256, description="the workers' consumer group")

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        return plain_name(value, "group")

    def probe(self) -> Probe:
        return Probe("stream", self.key, self.group)


class RedisStreamSource(RedisKind):
    kind = "redis-stream"
    Settings = RedisStreamSettings
