"""The inference-worker emulator behind ``autoscaler worker``: consumes a Redis queue correctly.

It stands in for a GPU inference server so the daemon, the demo and the tests drive a real queue.
It follows the worker conventions written in ``autoscaler.sources.redis.lists``,
``redis_stream`` and ``redis_zset``; in short, per kind:

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

Liveness and reclaim (``autoscaler.sources.redis.reclaim``): a worker with a ``Membership``
keeps ``<key>:alive:<consumer>`` alive (renewed every ttl/3 by a background task, until the
last request is settled) and, at start-up and then every ttl, gives the requests of dead
consumers back to the queue (list, zset) or claims them and serves them next (stream).

Serving means sleeping the payload's ``service_s`` (or the default service time). A payload the
worker cannot read (not a JSON object, or a ``service_s`` that is not a finite number >= 0) is
``LPUSH``-ed to ``<key>:dead`` and removed from the in-flight structure, not counted as
completed, and logged as ``request_dead``: nothing stays stuck and nothing is lost silently.

Shutdown: ``stop()`` (wired to SIGTERM and SIGINT) only sets a flag. The request being served is
finished and recorded; no new one is taken; blocking pops use a short timeout, so the worker
exits within that timeout after the current request. A restarted worker with the same consumer
name first finishes the request it had in flight (if it was not reclaimed meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from autoscaler.sources.redis.reclaim import SCORE_SUFFIX, Membership
from autoscaler.sources.redis.settings import (
    COMPLETED_SUFFIX,
    DEAD_SUFFIX,
    INFLIGHT_SUFFIX,
    PROCESSING_SUFFIX,
)

log = structlog.get_logger("autoscaler.emulator.worker")

WorkerKind = Literal["redis-list", "redis-stream", "redis-zset"]
KINDS: tuple[WorkerKind, ...] = ("redis-list", "redis-stream", "redis-zset")
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


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


class _Stopped(Exception):
    """Asked to stop while waiting for Redis before the first request."""


class Worker:
    """Takes, serves and settles requests one at a time until stopped.

    With a ``membership`` it also keeps its heartbeat and reaps dead consumers (see the module
    docstring); without one it is the plain emulator (in-process tests, older conventions).
    """

    def __init__(
        self, queue: Queue, *, block_s: float = 0.5, retry_s: float = 1.0,
        membership: Membership | None = None,
    ) -> None:
        self.queue = queue
        self.block_s = block_s
        self.retry_s = retry_s
        self.membership = membership
        self.served = 0
        self.dead = 0
        self._stopping = asyncio.Event()
        self._own_pending = False  # reclaimed entries were claimed to us: serve them first

    def stop(self) -> None:
        """Finish the current request, take no other. Safe to call from a signal handler."""
        if not self._stopping.is_set():
            log.info("worker_stopping", served=self.served)
        self._stopping.set()

    async def run(self) -> None:
        """Serve until stopped. Before the first request Redis may be down: keep trying, but
        a stop request ends the wait, since nothing has been taken yet."""
        job: Job | None = None
        try:
            await self._retrying(self.queue.prepare, until_stopped=True)
            if self.membership is not None:  # registered before anything is taken
                await self._retrying(self.membership.renew, until_stopped=True)
                await self._retrying(self._reap, until_stopped=True)
            job = await self._retrying(self.queue.resume, until_stopped=True)
        except _Stopped:
            log.info("worker_stopped", served=self.served, dead=self.dead)
            return
        if job is not None:
            log.info("request_resumed", handle=job.handle.decode(errors="replace"))
        heartbeat = None
        if self.membership is not None:
            heartbeat = asyncio.create_task(self._heartbeat(self.membership))
        try:
            await self._loop(job)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        if self.membership is not None:
            try:  # an optimisation only: without it the key expires and a reaper cleans up
                await self.membership.leave()
            except _TRANSIENT as exc:
                log.warning("worker_redis_error", step="leave", error=str(exc))
        log.info("worker_stopped", served=self.served, dead=self.dead)

    async def _loop(self, job: Job | None) -> None:
        while True:
            if job is None:
                if self._stopping.is_set():
                    break
                try:
                    job = await self._next()
                except _TRANSIENT as exc:
                    log.warning("worker_redis_error", step="take", error=str(exc))
                    await self._pause()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise  # e.g. WRONGTYPE: a configuration error, not a passing fault
                    log.warning("worker_group_missing", error=str(exc))  # deleted under us
                    try:  # nothing is taken yet: a stop may end the wait for Redis
                        await self._retrying(self.queue.prepare, until_stopped=True)
                    except _Stopped:
                        break
                continue
            await self._serve(job)
            job = None

    async def _next(self) -> Job | None:
        """Entries claimed from dead consumers first (stream), then a new request."""
        if self._own_pending:
            job = await self.queue.resume()
            if job is not None:
                log.info("request_resumed", handle=job.handle.decode(errors="replace"))
                return job
            self._own_pending = False
        return await self.queue.take(self.block_s)

    async def _reap(self) -> None:
        if self.membership is None:
            return
        moved, reaped = await self.membership.reap()
        if moved or reaped:
            log.info("requests_reclaimed", requests=moved, consumers=reaped)
        if moved:
            self._own_pending = True

    async def _heartbeat(self, membership: Membership) -> None:
        """Renew every ttl/3, reap every ttl, until cancelled after the last settle. A failed
        round is logged and retried at the next one: it must never end the task."""
        rounds = 0
        while True:
            await asyncio.sleep(membership.ttl_s / 3)
            rounds += 1
            try:
                await membership.renew()
                if rounds % 3 == 0:
                    await self._reap()
            except (*_TRANSIENT, ResponseError) as exc:
                log.warning("worker_redis_error", step="heartbeat", error=str(exc))

    async def _serve(self, job: Job) -> None:
        if job.service_s is None:
            await self._retrying(lambda: self.queue.bury(job))
            self.dead += 1
            log.warning(
                "request_dead", reason=job.problem, payload=job.raw[:200].decode(errors="replace")
            )
            return
        await asyncio.sleep(job.service_s)
        await self._retrying(lambda: self.queue.finish(job))
        self.served += 1
        log.info("request_completed", service_s=job.service_s, served=self.served)

    async def _retrying(self, step: Any, *, until_stopped: bool = False) -> Any:
        """Run ``step`` until Redis answers. Settling a served request is never skipped (a stop
        does not interrupt it); with ``until_stopped`` a stop request gives up instead.

        If Redis applied a settle but the reply was lost, the retry counts the request twice
        in ``<key>:completed``: the emulator prefers that to losing it.
        """
        while True:
            try:
                return await step()
            except _TRANSIENT as exc:
                log.warning("worker_redis_error", step=getattr(step, "__name__", "settle"),
                            error=str(exc))
            if until_stopped and self._stopping.is_set():
                raise _Stopped
            await self._pause() if until_stopped else await asyncio.sleep(self.retry_s)

    async def _pause(self) -> None:
        """Back off after an error, but wake at once when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.retry_s)
