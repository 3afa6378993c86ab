"""The source protocol.

A *source kind* (registered under ``autoscaler.sources``) validates a pool's ``queue`` block and
says which pools can share one sampler: every pool on one Redis URL is sampled in one round trip,
so the kind returns a ``sampler_key`` and builds one ``QueueSampler`` for all pools with that key.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import ClassVar, Protocol

from pydantic import BaseModel

from autoscaler.core.model import Observation
from autoscaler.ports.clock import Clock


class QueueSampler(Protocol):
    """Samples a set of pools together. A failed round returns stale observations, never raises."""

    async def sample(self) -> Mapping[str, Observation]: ...

    async def close(self) -> None: ...


class SourceKind(Protocol):
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable: ...

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> QueueSampler: ...
