"""The latest guarded desired size of every pool, as the tick loop publishes it for KEDA.

Plain bookkeeping plus an ``asyncio.Event`` per version, so ``StreamIsActive`` wakes on a
change while ``publish`` stays synchronous (the tick loop's callback calls it). A value
is served while it is fresh: a pool whose ticks fail (its queue cannot be sampled, its fleet
cannot be described) keeps its last value for ``stale_after_s``, then answers an error, so
KEDA applies its own ``fallback`` instead of a number nobody recomputes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class PoolNotFound(LookupError):
    """A ScaledObject names a pool that the config does not have."""


class NotDecided(LookupError):
    """The pool has no fresh decision (not yet, or its ticks have been failing)."""


@dataclass(frozen=True, slots=True)
class Published:
    desired: int
    time: float
    reason: str


class DesiredBoard:
    def __init__(self, pools: list[str], stale_after_s: float) -> None:
        self.pools = list(pools)
        self.stale_after_s = stale_after_s
        self._values: dict[str, Published] = {}
        self._errors: dict[str, str] = {}
        self._changed = asyncio.Event()
        self.version = 0

    def check(self, pool: str) -> None:
        if pool not in self.pools:
            known = ", ".join(self.pools) or "none"
            raise PoolNotFound(f"unknown pool {pool!r} (pools in the config: {known})")

    def publish(self, pool: str, desired: int, now: float, reason: str) -> bool:
        """Record a pool's new guarded desired size; True when it differs from the last."""
        previous = self._values.get(pool)
        self._values[pool] = Published(desired, now, reason)
        self._errors.pop(pool, None)
        changed = previous is None or previous.desired != desired
        if changed:
            self.version += 1
            self._changed.set()
            self._changed = asyncio.Event()
        return changed

    def failed(self, pool: str, error: str) -> None:
        self._errors[pool] = error

    def desired(self, pool: str, now: float) -> int:
        """The pool's desired size, or ``PoolNotFound`` / ``NotDecided`` saying why not."""
        self.check(pool)
        value = self._values.get(pool)
        why = self._errors.get(pool, "no tick has decided it yet")
        if value is None:
            raise NotDecided(f"pool {pool!r} has no decision: {why}")
        if now - value.time > self.stale_after_s:
            raise NotDecided(f"pool {pool!r}: last decision is {now - value.time:.0f}s old "
                             f"(limit {self.stale_after_s:g}s): {why}")
        return value.desired

    async def wait_change(self, version: int) -> int:
        """Wait until any pool's value changed after ``version``; the new version."""
        while self.version == version:
            await self._changed.wait()
        return self.version
