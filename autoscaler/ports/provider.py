"""The provider protocol: describe a group, set its desired size. Nothing else.

Adapters translate SDK errors into ``ProviderError`` carrying the group and the operation, so the
daemon can log, count and retry without knowing which cloud it talks to.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pydantic import BaseModel

from autoscaler.config.models import GroupConfig, PoolConfig
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock


class ProviderError(RuntimeError):
    """An adapter call that failed; ``retryable`` says whether the next tick may try again."""

    def __init__(self, group: str, operation: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"group {group!r}: {operation} failed: {message}")
        self.group = group
        self.operation = operation
        self.retryable = retryable


class Provider(Protocol):
    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    def __init__(self, group: GroupConfig, pool: PoolConfig, clock: Clock) -> None: ...

    async def start(self) -> None:
        """Connect / adopt existing instances. Called once before the first tick."""

    async def describe(self) -> GroupState: ...

    async def set_desired(self, desired: int) -> None: ...

    async def close(self, drain_timeout_s: float) -> None:
        """Release clients. The local provider also stops its workers, within the deadline."""
