"""The inference-worker emulator behind ``autoscaler worker``: serves N requests at once.

It stands in for a GPU inference server so the daemon, the demo and the tests drive a real queue
with the capacity the config models (``capacity.slots_per_instance``). How each kind takes and
settles a request is in ``autoscaler.emulator.queues``.

Slots: a worker with N slots runs N slot loops in one process. Each slot takes, serves and
settles one request at a time through its own queue object under its own consumer name:
``<consumer>`` when N is 1 (as before slots existed), ``<consumer>/<i>`` for i in 0..N-1
otherwise (``slot_consumers``). Why a consumer per slot rather than one consumer holding N
requests: the reclaim scripts, the zset's in-flight hash (one field per consumer) and the stream
resume (a consumer's pending entries, read back from ID 0) all assume one request per consumer,
so per-slot names keep them exactly as they are, and the sampler's probe counts every slot's
request (it sums each registered consumer's processing list, ``HLEN <key>:inflight``, or the
group's pending count).

Liveness and reclaim (``autoscaler.sources.redis.reclaim``): each slot is a ``Membership``
(``<key>:alive:<slot consumer>`` and an entry in ``<key>:consumers``). One background task
renews all of them in one MULTI every ttl/3, until the last request is settled, and every ttl
reaps the requests of dead consumers through slot 0's membership (the reaper skips only its own
name; the worker's other slots are alive, their keys renewed together). At start-up every slot
registers before the first reap and before anything is taken. A SIGKILL lets all N alive keys
expire and other workers reclaim each slot's request exactly once (lists and zsets: back into
the queue; streams: claimed to the reaper's slot 0, which serves them one after another before
new work, while its other slots keep taking new requests). Not guaranteed: a worker stalled for
a whole TTL is presumed dead and its requests are served twice (at least once, never lost).

Serving means sleeping the payload's ``service_s`` (or the default service time). A payload the
worker cannot read is ``LPUSH``-ed to ``<key>:dead`` and removed from the in-flight structure, not
counted as completed, and logged as ``request_dead``: nothing stays stuck and nothing is lost
silently.

Shutdown: ``stop()`` (wired to SIGTERM and SIGINT) only sets a flag. Every slot finishes and
records the request it is serving and takes no new one; blocking pops use a short timeout, so the
worker exits within that timeout after its longest request in flight. A restarted worker with the
same consumer name and slot count first finishes what each slot had in flight (if it was not
reclaimed meanwhile); slots it no longer has are reclaimed by any worker once their keys expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from autoscaler.emulator.queues import Job, Queue
from autoscaler.sources.redis.reclaim import Membership, renew_together

log = structlog.get_logger("autoscaler.emulator.worker")

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
SLOT_SEPARATOR = "/"


def slot_consumers(consumer: str, slots: int) -> list[str]:
    """The consumer name of each slot: ``consumer`` itself for one slot (the names workers had
    before slots existed), else ``consumer/0`` .. ``consumer/N-1``."""
    if slots < 1:
        raise ValueError(f"a worker needs at least 1 slot, got {slots}")
    if slots == 1:
        return [consumer]
    return [f"{consumer}{SLOT_SEPARATOR}{i}" for i in range(slots)]


@dataclass(eq=False)
class _Slot:
    """One slot: its queue object (its consumer name) and, with reclaim, its membership."""

    index: int
    queue: Queue
    membership: Membership | None
    own_pending: bool = False  # entries were claimed to this slot: serve them before new work


class _Stopped(Exception):
    """Asked to stop while waiting for Redis before the first request."""


class Worker:
    """Takes, serves and settles up to ``len(queues)`` requests at once until stopped.

    ``queues`` holds one queue object per slot, each under its own consumer name
    (``slot_consumers``). With ``memberships`` (one per slot, same order) it also keeps their
    heartbeats and reaps dead consumers (see the module docstring); without, it is the plain
    emulator (in-process tests, older conventions).
    """

    def __init__(
        self, queues: Sequence[Queue], *, block_s: float = 0.5, retry_s: float = 1.0,
        memberships: Sequence[Membership] | None = None,
    ) -> None:
        if not queues:
            raise ValueError("a worker needs at least one slot")
        if memberships is not None and len(memberships) != len(queues):
            raise ValueError(f"{len(queues)} slots but {len(memberships)} memberships")
        self.slots = [
            _Slot(i, queue, None if memberships is None else memberships[i])
            for i, queue in enumerate(queues)
        ]
        self.memberships = list(memberships or ())
        self.block_s = block_s
        self.retry_s = retry_s
        self.served = 0
        self.dead = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Every slot finishes its current request and takes no other. Safe to call from a
        signal handler."""
        if not self._stopping.is_set():
            log.info("worker_stopping", served=self.served)
        self._stopping.set()

    async def run(self) -> None:
        """Serve until stopped. Before the first request Redis may be down: keep trying, but
        a stop request ends the wait, since nothing has been taken yet."""
        try:
            # One key (and stream group) for every slot: prepared once.
            await self._retrying(self.slots[0].queue.prepare, until_stopped=True)
            if self.memberships:  # every slot registered before anything is taken or reaped
                await self._retrying(self._renew, until_stopped=True)
                await self._retrying(self._reap, until_stopped=True)
            jobs = [await self._retrying(s.queue.resume, until_stopped=True) for s in self.slots]
        except _Stopped:
            log.info("worker_stopped", served=self.served, dead=self.dead)
            return
        for slot, job in zip(self.slots, jobs, strict=True):
            if job is not None:
                slot.own_pending = True  # a stream consumer may hold more than the first
                log.info("request_resumed", slot=slot.index,
                         handle=job.handle.decode(errors="replace"))
        heartbeat = asyncio.create_task(self._heartbeat()) if self.memberships else None
        try:
            failure = await self._serve_slots(jobs)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        if failure is not None:
            # No leave: the alive keys expire and reapers return whatever a slot still holds.
            raise failure
        for membership in self.memberships:
            try:  # an optimisation only: without it the key expires and a reaper cleans up
                await membership.leave()
            except _TRANSIENT as exc:
                log.warning("worker_redis_error", step="leave", error=str(exc))
        log.info("worker_stopped", served=self.served, dead=self.dead)

    async def _serve_slots(self, jobs: list[Job | None]) -> BaseException | None:
        """Run every slot until all have stopped. A slot that fails (e.g. WRONGTYPE: the key
        holds another type, a configuration error) stops the others the graceful way - each
        finishes what it holds - and its error is returned for ``run`` to raise."""
        tasks = {
            asyncio.create_task(self._loop(slot, job), name=f"slot-{slot.index}")
            for slot, job in zip(self.slots, jobs, strict=True)
        }
        failure: BaseException | None = None
        try:
            pending = tasks
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None and failure is None:
                        failure = task.exception()
                        self._stopping.set()
        finally:
            for task in tasks:  # only when ``run`` itself is cancelled
                task.cancel()
        return failure

    async def _loop(self, slot: _Slot, job: Job | None) -> None:
        while True:
            if job is None:
                if self._stopping.is_set():
                    break
                try:
                    job = await self._next(slot)
                except _TRANSIENT as exc:
                    log.warning("worker_redis_error", step="take", slot=slot.index, error=str(exc))
                    await self._pause()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise  # e.g. WRONGTYPE: a configuration error, not a passing fault
                    log.warning("worker_group_missing", error=str(exc))  # deleted under us
                    try:  # nothing is taken yet: a stop may end the wait for Redis
                        await self._retrying(slot.queue.prepare, until_stopped=True)
                    except _Stopped:
                        break
                continue
            await self._serve(slot, job)
            job = None

    async def _next(self, slot: _Slot) -> Job | None:
        """Entries claimed from dead consumers first (stream), then a new request."""
        if slot.own_pending:
            job = await slot.queue.resume()
            if job is not None:
                log.info("request_resumed", slot=slot.index,
                         handle=job.handle.decode(errors="replace"))
                return job
            slot.own_pending = False
        return await slot.queue.take(self.block_s)

    async def _renew(self) -> None:
        """Every slot's alive key in one MULTI (one round trip, whatever the slot count)."""
        await renew_together(self.memberships)

    async def _reap(self) -> None:
        """Reclaim for the whole worker through slot 0: what it claims (stream) is its own."""
        if not self.memberships:
            return
        moved, reaped = await self.memberships[0].reap()
        if moved or reaped:
            log.info("requests_reclaimed", requests=moved, consumers=reaped)
        if moved:
            self.slots[0].own_pending = True

    async def _heartbeat(self) -> None:
        """Renew every ttl/3, reap every ttl, until cancelled after the last settle. A failed
        round is logged and retried at the next one: it must never end the task."""
        ttl_s = self.memberships[0].ttl_s
        rounds = 0
        while True:
            await asyncio.sleep(ttl_s / 3)
            rounds += 1
            try:
                await self._renew()
                if rounds % 3 == 0:
                    await self._reap()
            except (*_TRANSIENT, ResponseError) as exc:
                log.warning("worker_redis_error", step="heartbeat", error=str(exc))

    async def _serve(self, slot: _Slot, job: Job) -> None:
        if job.service_s is None:
            await self._retrying(lambda: slot.queue.bury(job))
            self.dead += 1
            log.warning(
                "request_dead", slot=slot.index, reason=job.problem,
                payload=job.raw[:200].decode(errors="replace"),
            )
            return
        await asyncio.sleep(job.service_s)
        await self._retrying(lambda: slot.queue.finish(job))
        self.served += 1
        log.info("request_completed", slot=slot.index, service_s=job.service_s,
                 served=self.served)

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
