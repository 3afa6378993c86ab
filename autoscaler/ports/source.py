"""The source protocol.

A *source kind* (registered under ``autoscaler.sources``) validates a pool's ``queue`` block and
says which pools can share one sampler: every pool on one Redis URL is sampled in one round trip,
so the kind returns a ``sampler_key`` and builds one ``QueueSampler`` for all pools with that key.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from autoscaler.core.model import Observation
from autoscaler.core.rates import Reading
from autoscaler.ports.clock import Clock


class QueueSampler(Protocol):
    """Samples a set of pools together. A failed round returns stale observations, never raises."""

    async def sample(self) -> Mapping[str, Observation]: ...

    async def close(self) -> None: ...


Baselines = tuple[Reading | None, Reading | None]
"""One pool's counter baselines: (arrivals, completions), each ``(time, value)`` or ``None``."""


@runtime_checkable
class CounterBaselines(Protocol):
    """A sampler whose rates come from counter deltas (``autoscaler.core.rates``) and that lets
    the daemon save and restore its baselines, so the first tick after a restart has rates
    (``autoscaler.runtime.persistence``). Optional: samplers without it start afresh."""

    def baselines(self) -> Mapping[str, Baselines]:
        """Each pool's current baselines (pools with neither may be left out)."""

    def resume_baselines(self, baselines: Mapping[str, Baselines]) -> list[str]:
        """Adopt saved baselines for pools that have none yet; the pools resumed. Names this
        sampler does not serve are ignored."""


class SourceKind(Protocol):
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable: ...

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> QueueSampler: ...


@runtime_checkable
class ConsumedQueue(Protocol):
    """Settings of a queue that workers consume: ``worker_url`` is the address a worker connects
    to (a Redis, AMQP or NATS URL, an SQS queue URL). Kinds whose URL is something else (a
    Prometheus server, which workers never read) do not implement it."""

    def worker_url(self) -> str: ...


def worker_queue_url(settings: BaseModel | None) -> str | None:
    """The URL to hand a pool's workers (the ``local`` provider passes it as
    ``AUTOSCALER_QUEUE_URL``), or None when the pool's queue is not one they consume."""
    return settings.worker_url() if isinstance(settings, ConsumedQueue) else None
