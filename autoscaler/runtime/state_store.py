"""Controller state in Redis: one key per pool under a prefix, with a TTL.

``load`` is one ``MGET`` and ``save`` one non-transactional pipeline of ``SET key value EX ttl``,
each bounded by ``timeout_s``: one round trip per server per tick, whatever the number of pools.
A failure raises ``StateStoreError`` carrying the URL with its password redacted.

What is not guaranteed: the write is not atomic across pools and not fenced, so two daemons
running the same pools (no leader election yet) overwrite each other's state; the last save
wins. A record lives ``ttl`` seconds after its last save: a daemon stopped for longer starts
fresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from autoscaler.ports.redis_urls import redact_url
from autoscaler.ports.state_store import StateStoreError
from autoscaler.sources.redis.connect import redis_client


class RedisStateStore:
    """The ``StateStore`` port on a Redis server (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str, ttl_s: float, timeout_s: float) -> None:
        if ttl_s <= 0 or timeout_s <= 0:
            raise ValueError("ttl_s and timeout_s must be > 0")
        self.url = url
        self.prefix = prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._timeout_s = timeout_s
        self._client = redis_client(
            url, socket_connect_timeout=timeout_s, health_check_interval=0
        )

    @property
    def location(self) -> str:
        return f"{redact_url(self.url)} {self.prefix}*"

    def key(self, pool: str) -> str:
        return self.prefix + pool

    async def load(self, pools: Sequence[str]) -> Mapping[str, str]:
        if not pools:
            return {}
        try:
            async with asyncio.timeout(self._timeout_s):
                values = await self._client.mget([self.key(p) for p in pools])
        except Exception as exc:
            raise self._error("load", exc) from exc
        records: dict[str, str] = {}
        for pool, value in zip(pools, values, strict=True):
            if value is not None:
                # Not UTF-8 is not ours: replaced characters make it fail to decode later,
                # which discards that one pool's record instead of the whole load.
                text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                records[pool] = text
        return records

    async def save(self, records: Mapping[str, str]) -> None:
        if not records:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    for pool, text in records.items():
                        pipe.set(self.key(pool), text, px=self._ttl_ms)
                    await pipe.execute()
        except Exception as exc:
            raise self._error("save", exc) from exc

    async def close(self) -> None:
        await self._client.aclose()

    def _error(self, operation: str, exc: BaseException) -> StateStoreError:
        reason = str(exc) or type(exc).__name__
        return StateStoreError(f"state store {redact_url(self.url)}: {operation} failed: {reason}")
