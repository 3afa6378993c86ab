"""Paused pools: sampled and decided, never actuated (``autoscaler pause`` / ``resume``).

The pause lives in the state store's Redis server, one hash ``{prefix}paused`` (pool → JSON
``{"since", "reason"}``), without expiry, so every replica and every restart see it. Each tick
the daemon reads the hash (one ``HGETALL``, bounded by the store's timeout) before the gate;
``PauseGate`` then closes actuation for those pools only, and actuators drop a resize still
queued for a pool paused since (``autoscaler.runtime.gate.may_actuate``).

What is not guaranteed: a pause takes effect at the next tick (a resize call already sent to
a provider completes). While the server cannot be read the last known set stays in force
(``pause_read_failed`` once per outage): an unreachable store neither pauses nor resumes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from autoscaler.core.model import Decision
from autoscaler.ports.clock import Clock
from autoscaler.ports.state_store import StateStoreError
from autoscaler.runtime.crosspool import TickView
from autoscaler.runtime.gate import ActuationGate, FencedGate
from autoscaler.sources.redis.connect import redis_client
from autoscaler.sources.redis.settings import redact_url

log = structlog.get_logger("autoscaler.runtime")

WAIT_S = 0.1
"""How long a tick waits for the pause read after the first one."""


class PauseStore:
    """The paused pools' hash on a Redis server."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self.url = url
        self.key = prefix + "paused"
        self._timeout_s = timeout_s
        self._client = redis_client(  # any URL form the state store accepts
            url, socket_connect_timeout=timeout_s, health_check_interval=0
        )

    @property
    def location(self) -> str:
        return f"{redact_url(self.url)} {self.key}"

    async def paused(self) -> dict[str, dict[str, Any]]:
        """Every paused pool and what was recorded with its pause."""
        raw = await self._call("read", self._client.hgetall(self.key))
        out: dict[str, dict[str, Any]] = {}
        for pool, value in raw.items():
            name = pool.decode(errors="replace") if isinstance(pool, bytes) else str(pool)
            try:
                info = json.loads(value)
            except ValueError:
                info = {}
            out[name] = info if isinstance(info, dict) else {}
        return out

    async def pause(self, pool: str, *, since: float, reason: str) -> bool:
        """Pause ``pool``; False when it was paused already (its record is kept)."""
        record = json.dumps({"since": since, "reason": reason})
        added = await self._call("write", self._client.hsetnx(self.key, pool, record))
        return bool(added)

    async def resume(self, pool: str) -> bool:
        """Resume ``pool``; False when it was not paused."""
        return bool(await self._call("write", self._client.hdel(self.key, pool)))

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, operation: str, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await awaitable
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            raise StateStoreError(
                f"state store {redact_url(self.url)}: pause {operation} failed: {reason}"
            ) from exc


class PauseGate:
    """The inner gate (open, dry run, leader election), closed as well for paused pools."""

    def __init__(self, inner: ActuationGate) -> None:
        self.inner = inner
        self.paused: frozenset[str] = frozenset()

    def is_open(self) -> bool:
        return self.inner.is_open()

    @property
    def why_closed(self) -> str:
        return self.inner.why_closed or ("paused" if self.paused else "")

    def is_open_for(self, pool: str) -> bool:
        return pool not in self.paused and self.inner.is_open()

    def why_closed_for(self, pool: str) -> str:
        return self.inner.why_closed or ("paused" if pool in self.paused else "")

    async def confirm(self) -> bool:
        return await self.inner.confirm() if isinstance(self.inner, FencedGate) else True


class PauseStep:
    """The cross-pool step that refreshes ``PauseGate.paused`` from the store every tick,
    logs each change and exports ``autoscaler_pool_paused{pool}``; decisions pass unchanged
    (the gate does the gating, so a paused pool's decision is still logged and exported)."""

    def __init__(
        self, store: PauseStore, gate: PauseGate, pools: Sequence[str], clock: Clock,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.pools = tuple(pools)
        self.clock = clock
        self._failing = False
        self._first = True
        self._task: asyncio.Task[None] | None = None
        self._gauge = None if registry is None else Gauge(
            "autoscaler_pool_paused",
            "1 while the pool is paused (autoscaler pause): decided, never actuated",
            ["pool"], registry=registry,
        )
        for pool in self.pools:
            self._export(pool, False)

    async def refresh(self) -> None:
        try:
            records = await self.store.paused()
        except StateStoreError as exc:
            if not self._failing:
                log.warning("pause_read_failed", store=self.store.location, error=str(exc),
                            paused=sorted(self.gate.paused))
            self._failing = True
            return
        if self._failing:
            log.info("pause_read_recovered", store=self.store.location)
        self._failing = False
        now = frozenset(p for p in records if p in self.pools)
        for pool in sorted(now - self.gate.paused):
            info = records[pool]
            log.warning("pool_paused", pool=pool, reason=info.get("reason", ""),
                        since=info.get("since"))
        for pool in sorted(self.gate.paused - now):
            log.info("pool_resumed", pool=pool)
        self.gate.paused = now
        for pool in self.pools:
            self._export(pool, pool in now)

    async def __call__(self, view: TickView) -> Mapping[str, Decision]:
        """The first tick waits for the read (a pause is in force before the first resize);
        later ones wait at most ``WAIT_S`` and leave a slow read to finish in the background,
        so a hung server costs a tick 0.1 s, not the store's whole timeout."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.refresh(),
                                                                name="pause-refresh")
        if self._first:
            self._first = False
            await asyncio.shield(self._task)
        else:
            await asyncio.wait({self._task}, timeout=WAIT_S)
        return view.decisions

    def _export(self, pool: str, paused: bool) -> None:
        if self._gauge is not None:
            self._gauge.labels(pool).set(1 if paused else 0)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.close()
