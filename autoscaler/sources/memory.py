"""``memory``: an in-process queue, for the embedded demo and for tests of the shell.

Queues live in a process-wide registry by name, so the load generator, the in-process workers of
the ``local`` provider and the daemon's sampler all meet on the same object without wiring.
Each item carries the wall time it was enqueued (like a producer's timestamp in Redis) and the
seconds of service it needs. The queue keeps cumulative counters (enqueued, completed) so the
sampler derives rates from deltas exactly as it would from Redis counters, through the same
helper (``autoscaler.core.rates``): a queue replaced by ``reset_queue`` restarts its counters,
which reads as a reset (rate unknown for one tick), never as a negative rate.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.core.model import Observation
from autoscaler.core.plausibility import classify_enqueue_time
from autoscaler.core.rates import RateMeter
from autoscaler.ports.clock import Clock
from autoscaler.ports.observations import InvalidObservations


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="default", description="queues with the same name are shared")


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One request: ``enqueued_at`` is wall seconds, ``service_s`` the work it needs."""

    id: int
    enqueued_at: float
    service_s: float


class MemoryQueue:
    """A FIFO with counters and a bounded record of completed requests' waits.

    Waiting consumers are woken through futures of the *calling* loop, never a long-lived
    ``asyncio.Condition``: the registry outlives event loops (each test runs its own), and an
    asyncio primitive bound to a dead loop would fail. ``get`` pops only after waking, so
    cancelling an idle consumer can never drop an item.
    """

    def __init__(self, name: str, history: int = 200_000) -> None:
        self.name = name
        self._items: deque[MemoryItem] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ids = itertools.count(1)
        self.in_flight = 0
        self.enqueued_total = 0
        self.completed_total = 0
        self.waits: deque[float] = deque(maxlen=history)
        """Queue wait of each request that was taken, in seconds (most recent ``history``)."""
        self.completed_ids: deque[int] = deque(maxlen=history)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, enqueued_at: float, service_s: float) -> MemoryItem:
        """Enqueue one request and wake one idle consumer."""
        item = MemoryItem(next(self._ids), enqueued_at, service_s)
        self._items.append(item)
        self.enqueued_total += 1
        self._wake_one()
        return item

    def requeue(self, item: MemoryItem) -> None:
        """Put an in-flight item back at the head (a consumer killed mid-request)."""
        self.in_flight -= 1
        self._items.appendleft(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def oldest_enqueued_at(self) -> float | None:
        return self._items[0].enqueued_at if self._items else None

    def take_nowait(self, now_wall: float) -> MemoryItem | None:
        """Pop the head and count it in flight; ``None`` when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        self.in_flight += 1
        self.waits.append(max(0.0, now_wall - item.enqueued_at))
        return item

    async def take(self, clock: Clock) -> MemoryItem:
        """Wait for the next item; the caller must ``complete`` it."""
        while True:
            item = self.take_nowait(clock.wall())
            if item is not None:
                return item
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # We were woken for an item but cancelled before taking it: pass the
                    # wake-up on, or the item would wait for the next put.
                    self._wake_one()
                else:
                    waiter.cancel()
                raise

    def complete(self, item: MemoryItem) -> None:
        self.in_flight -= 1
        self.completed_total += 1
        self.completed_ids.append(item.id)


_QUEUES: dict[str, MemoryQueue] = {}


def get_queue(name: str) -> MemoryQueue:
    """The process-wide queue called ``name``, created on first use."""
    queue = _QUEUES.get(name)
    if queue is None:
        queue = _QUEUES[name] = MemoryQueue(name)
    return queue


def reset_queue(name: str) -> MemoryQueue:
    """A fresh, empty queue under ``name`` (tests and repeated demos in one process)."""
    queue = _QUEUES[name] = MemoryQueue(name)
    return queue


class MemorySampler:
    """Measures every memory queue of its pools; rates come from counter deltas between samples."""

    def __init__(self, pools: Sequence[tuple[str, MemorySettings]], clock: Clock) -> None:
        self._pools = list(pools)
        self._clock = clock
        self._meters: dict[str, tuple[RateMeter, RateMeter]] = {}
        self.invalid = InvalidObservations()
        """Implausible enqueue times seen; the daemon points its ``sink`` at telemetry."""

    async def sample(self) -> Mapping[str, Observation]:
        now = self._clock.monotonic()
        wall = self._clock.wall()
        result: dict[str, Observation] = {}
        for pool, settings in self._pools:
            queue = get_queue(settings.name)
            oldest = queue.oldest_enqueued_at()
            meters = self._meters.get(pool)
            if meters is None:
                meters = self._meters[pool] = (RateMeter(), RateMeter())
            arrival = meters[0].update(now, queue.enqueued_total)
            completion = meters[1].update(now, queue.completed_total)
            wait: float | None = 0.0
            if oldest is not None:
                reason = classify_enqueue_time(oldest, wall)
                if reason is None:
                    wait = max(0.0, wall - oldest)
                else:  # unknown: an implausible producer timestamp never drives scaling
                    wait = None
                    self.invalid.record(pool, reason, oldest)
            result[pool] = Observation(
                time=now,
                depth=len(queue),
                oldest_wait_s=wait,
                in_flight=queue.in_flight,
                arrival_rate=arrival,
                completion_rate=completion,
            )
        return result

    async def close(self) -> None:
        """Nothing to release: the queues belong to the process."""


class MemorySource:
    kind = "memory"
    Settings = MemorySettings

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable:
        """All memory pools share one sampler: sampling is a few attribute reads."""
        return ("memory",)

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> MemorySampler:
        checked: list[tuple[str, MemorySettings]] = []
        for pool, settings in pools:
            if not isinstance(settings, MemorySettings):
                raise TypeError(f"pool {pool!r}: memory queue settings expected, got {settings!r}")
            checked.append((pool, settings))
        return MemorySampler(checked, clock)
