"""How the emulator takes and settles one request, per Redis queue kind.

It follows the worker conventions written in ``autoscaler.sources.redis.lists``,
``streams`` and ``zsets``; in short, per kind (``<consumer>`` is one slot's consumer name, see
``autoscaler.emulator.worker``):

* list: ``BLMOVE <key> <key>:processing:<consumer> RIGHT LEFT`` takes a request; after
  serving, ``LREM <key>:processing:<consumer> 1 <payload>`` and ``INCR <key>:completed`` in one
  MULTI/EXEC.
* stream: ``XREADGROUP`` in group ``<group>`` as ``<consumer>`` (the group is created at ID 0 with
  MKSTREAM when missing); after serving, ``XACK`` and ``INCR <key>:completed`` in one MULTI/EXEC.
* zset: ``ZPOPMIN`` and ``HSET <key>:inflight <consumer> <member>`` and
  ``HSET <key>:inflight:score <consumer> <score>`` in one script (``ZSET_CLAIM``), so no
  crash can leave a popped member unrecorded; after serving, ``HDEL`` both and
  ``INCR <key>:completed`` in one MULTI/EXEC. No blocking pop can run inside a script, so an
  idle worker polls: 5 ms after the queue was found empty, doubling up to 100 ms.

Each queue object holds at most ONE request at a time (the zset's in-flight hash has one field
per consumer, a stream consumer's pending list is read back from ID 0 on resume): a worker with
several slots therefore uses one queue object, under its own consumer name, per slot.

A payload the worker cannot read (not a JSON object, or a ``service_s`` that is not a finite
number >= 0) becomes a ``Job`` with ``service_s`` ``None``; ``bury`` ``LPUSH``-es it to
``<key>:dead`` and removes it from the in-flight structure.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from redis.exceptions import ResponseError

from autoscaler.sources.redis.reclaim import SCORE_SUFFIX
from autoscaler.sources.redis.settings import (
    COMPLETED_SUFFIX,
    DEAD_SUFFIX,
    INFLIGHT_SUFFIX,
    PROCESSING_SUFFIX,
)

WorkerKind = Literal["redis-list", "redis-stream", "redis-zset"]
KINDS: tuple[WorkerKind, ...] = ("redis-list", "redis-stream", "redis-zset")


@dataclass(frozen=True, slots=True)
class Job:
    """One request taken from the queue.

    ``raw`` is what goes to the dead-letter list if the request is unreadable, ``handle`` what
    the queue needs to settle it (the payload, member or stream ID), ``service_s`` ``None`` when
    the payload is bad (then ``problem`` says why).
    """

    raw: bytes
    handle: bytes
    service_s: float | None
    problem: str | None = None


def service_time(value: object, default: float) -> tuple[float | None, str | None]:
    """The ``service_s`` of a payload, or ``(None, reason)`` if it is unusable."""
    if value is None:
        return default, None
    if isinstance(value, bytes | str):
        try:
            value = float(value)
        except ValueError:
            return None, "service_s is not a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "service_s is not a number"
    if not math.isfinite(value) or value < 0:
        return None, "service_s must be a finite number >= 0"
    return float(value), None


def json_job(raw: bytes, default: float) -> Job:
    """A list payload or zset member: a JSON object with an optional ``service_s``."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting past the parser's stack
        return Job(raw, raw, None, "payload is not JSON")
    if not isinstance(payload, dict):
        return Job(raw, raw, None, "payload is not a JSON object")
    seconds, problem = service_time(payload.get("service_s"), default)
    return Job(raw, raw, seconds, problem)


class Queue(Protocol):
    """How one kind takes and settles requests."""

    async def prepare(self) -> None: ...

    async def resume(self) -> Job | None: ...

    async def take(self, block_s: float) -> Job | None: ...

    async def finish(self, job: Job) -> None: ...

    async def bury(self, job: Job) -> None: ...


class ListQueue:
    """Reliable pop: the request sits on ``<key>:processing:<consumer>`` while it is served.

    One list per consumer (not one shared list) so that a reaper knows whose request it is.
    """

    def __init__(self, client: Any, key: str, consumer: str, default_s: float) -> None:
        self.client, self.key, self.default_s = client, key, default_s
        self.processing = f"{key}{PROCESSING_SUFFIX}:{consumer}"

    async def prepare(self) -> None:
        return None

    async def resume(self) -> Job | None:
        raw = await self.client.lindex(self.processing, -1)
        return None if raw is None else json_job(raw, self.default_s)

    async def take(self, block_s: float) -> Job | None:
        raw = await self.client.blmove(self.key, self.processing, block_s, "RIGHT", "LEFT")
        return None if raw is None else json_job(raw, self.default_s)

    async def finish(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lrem(self.processing, 1, job.handle)
            pipe.incr(self.key + COMPLETED_SUFFIX)
            await pipe.execute()

    async def bury(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key + DEAD_SUFFIX, job.raw)
            pipe.lrem(self.processing, 1, job.handle)
            await pipe.execute()


ZSET_CLAIM = """
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
redis.call('HSET', KEYS[2], ARGV[1], popped[1])
redis.call('HSET', KEYS[3], ARGV[1], popped[2])
return popped
"""
"""Pop the lowest member and record it as this consumer's (member and score), atomically."""

ZSET_POLL_S = (0.005, 0.1)  # an idle zset worker's first and longest wait between claims


class ZsetQueue:
    """Pop the lowest score; ``<key>:inflight`` maps this consumer to its member meanwhile."""

    def __init__(self, client: Any, key: str, consumer: str, default_s: float) -> None:
        self.client, self.key, self.consumer, self.default_s = client, key, consumer, default_s
        self.inflight = key + INFLIGHT_SUFFIX
        self.scores = key + SCORE_SUFFIX
        self._claim = client.register_script(ZSET_CLAIM)

    async def prepare(self) -> None:
        return None

    async def resume(self) -> Job | None:
        member = await self.client.hget(self.inflight, self.consumer)
        return None if member is None else json_job(member, self.default_s)

    async def take(self, block_s: float) -> Job | None:
        """Claim the lowest member (with its score, so that a reaper can put it back where it
        was), polling for up to ``block_s`` while the queue is empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_s
        delay, longest = ZSET_POLL_S
        while True:
            popped = await self._claim(
                keys=[self.key, self.inflight, self.scores], args=[self.consumer]
            )
            if popped:
                return json_job(popped[0], self.default_s)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(2 * delay, longest)

    async def finish(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.inflight, self.consumer)
            pipe.hdel(self.scores, self.consumer)
            pipe.incr(self.key + COMPLETED_SUFFIX)
            await pipe.execute()

    async def bury(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key + DEAD_SUFFIX, job.raw)
            pipe.hdel(self.inflight, self.consumer)
            pipe.hdel(self.scores, self.consumer)
            await pipe.execute()


class StreamQueue:
    """A consumer in a group; the group's pending list is the in-flight record."""

    def __init__(
        self, client: Any, key: str, group: str, consumer: str, default_s: float
    ) -> None:
        self.client, self.key, self.group = client, key, group
        self.consumer, self.default_s = consumer, default_s

    async def prepare(self) -> None:
        try:
            await self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def resume(self) -> Job | None:
        return await self._read("0", None)

    async def take(self, block_s: float) -> Job | None:
        return await self._read(">", max(1, int(block_s * 1000)))

    async def _read(self, start: str, block_ms: int | None) -> Job | None:
        reply = await self.client.xreadgroup(
            self.group, self.consumer, {self.key: start}, count=1, block=block_ms
        )
        entries = _stream_entries(reply)
        if not entries:
            return None
        entry_id, fields = entries[0]
        fields = fields or {}  # an entry deleted while pending comes back without fields
        # Field values may be binary (a tensor, a pickle): escape, never fail, since this copy
        # only feeds the dead-letter list and a crash here would repeat on every restart.
        raw = json.dumps({
            "id": entry_id.decode(),
            "fields": {k.decode(errors="backslashreplace"): v.decode(errors="backslashreplace")
                       for k, v in fields.items()},
        }).encode()
        if not fields:
            return Job(raw, entry_id, None, "entry was deleted while pending")
        seconds, problem = service_time(fields.get(b"service_s"), self.default_s)
        return Job(raw, entry_id, seconds, problem)

    async def finish(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, self.group, job.handle)
            pipe.incr(self.key + COMPLETED_SUFFIX)
            await pipe.execute()

    async def bury(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key + DEAD_SUFFIX, job.raw)
            pipe.xack(self.key, self.group, job.handle)
            await pipe.execute()


def _stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """Entries of an XREADGROUP reply for one stream, in RESP2 (list) or RESP3 (dict) shape."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = list(reply.values())
        return list(streams[0][0]) if streams and streams[0] and streams[0][0] else []
    return list(reply[0][1])


