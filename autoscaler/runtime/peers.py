"""Seeing another daemon act on the same pools (no ``leader_election``: each daemon acts).

Two daemons on the same pools both resize the same groups: their decisions fight and their
saved state overwrites each other's. Leader election prevents it; without it this module at
least makes it visible. While its actuation gate is open, a daemon writes a small heartbeat
record (daemon id, host, pid, metrics address, its pools, wall time, period) every ``period``
into the hash ``autoscaler:daemons`` on each Redis server its pools use (the
``controller.state_store.url`` if set, else each pool's Redis queue server), and reads the
others' records in the same round trip. A fresh record from another daemon (younger than
three of *its* periods plus a second) that names one of the same pools on the same server is a
daemon acting next to this one: a warning ``other_daemon_acting`` (again every
``WARN_EVERY_S`` while it lasts; ``other_daemon_gone`` when it ends) and the gauge
``autoscaler_other_daemons_acting``.

Pools are matched by name, or by the queue they read on that server (kind, key, group and
prefix: two daemons that give one queue different pool names still act on the same
workload). What is not guaranteed: two daemons whose pools share groups but neither a pool name
nor a queue on one server, or that keep their pools on memory queues without a state store
URL, are not seen. A record older than ``PRUNE_AFTER_S`` is deleted by whoever reads it;
a stopping daemon deletes its own; a closed gate (dry run, standby) writes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import Gauge

from autoscaler.config.models import Config
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.redis.connect import RedisClient, redis_client
from autoscaler.sources.redis.settings import RedisSettings, redact_url

log = structlog.get_logger("autoscaler.runtime")

KEY = "autoscaler:daemons"
MIN_PERIOD_S = 1.0
"""Heartbeats at the loop's interval, but no more often than this."""
WARN_EVERY_S = 60.0
PRUNE_AFTER_S = 600.0
TIMEOUT_S = 0.5


class Watched(Protocol):
    config: Config
    loop: ControlLoop


@dataclass(frozen=True, slots=True)
class Peer:
    """Another daemon's fresh record naming some of this daemon's pools on one server."""

    id: str
    host: str
    pid: int
    metrics: str
    pools: tuple[str, ...]
    server: str


def queue_tags(config: Config, url: str) -> dict[str, str]:
    """Pool name -> the queue it reads on the Redis server ``url`` (pools on another server or
    on no Redis have none): what two daemons share even when they name their pools apart."""
    tags = {}
    for pool in config.pools:
        settings = pool.queue.settings
        if isinstance(settings, RedisSettings) and str(settings.url) == url:
            tags[pool.name] = "|".join((pool.queue.kind, settings.key,
                                        str(getattr(settings, "group", "") or ""),
                                        str(getattr(settings, "prefix", "") or "")))
    return tags


def servers_of(config: Config) -> dict[str, list[str]]:
    """Redis URL -> the pools whose heartbeat goes there (pools on no Redis are left out)."""
    store = config.controller.state_store
    servers: dict[str, list[str]] = defaultdict(list)
    for pool in config.pools:
        url = store.url if store is not None and store.url is not None else None
        settings = pool.queue.settings
        if url is None and isinstance(settings, RedisSettings):
            url = str(settings.url)
        if url is not None:
            servers[url].append(pool.name)
    return dict(servers)


class PeerWatch:
    def __init__(
        self,
        daemon: Watched,
        *,
        telemetry: Telemetry | None = None,
        daemon_id: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.daemon = daemon
        self.id = daemon_id or uuid.uuid4().hex[:12]
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._wall = wall
        self._clients: dict[str, RedisClient] = {}
        self._written: set[str] = set()
        self._seen: dict[str, float] = {}
        """Foreign daemon id -> when it was last warned about."""
        self._errors: dict[str, str] = {}
        self.peers: list[Peer] = []
        self._gauge: Gauge | None = None
        if isinstance(telemetry, PrometheusTelemetry):
            self._gauge = Gauge(
                "autoscaler_other_daemons_acting",
                "Other daemons whose fresh heartbeat names some of this daemon's pools "
                "(should be 0: two actors on one pool fight; use leader_election)",
                registry=telemetry.registry)
            self._gauge.set(0)

    @property
    def period_s(self) -> float:
        return max(MIN_PERIOD_S, self.daemon.loop.interval_s)

    def _client(self, url: str) -> RedisClient:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = redis_client(  # sentinel and unix URLs too
                url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S,
                health_check_interval=0)
        return client

    def _record(self, pools: list[str], tags: Mapping[str, str]) -> str:
        ctl = self.daemon.config.controller
        return json.dumps({"id": self.id, "host": self.host, "pid": self.pid,
                           "metrics": ctl.metrics_address, "pools": sorted(pools),
                           "queues": sorted(tags[p] for p in pools if p in tags),
                           "wall": self._wall(), "period_s": self.period_s})

    async def step(self) -> list[Peer]:
        """One heartbeat: write this daemon's record and read the others', per server."""
        acting = self.daemon.loop.gate.is_open()
        servers = servers_of(self.daemon.config) if acting else {}
        for url in [u for u in self._written if u not in servers]:  # gate closed, pool gone
            await self._forget(url)
        results = await asyncio.gather(*(self._beat(url, pools)
                                         for url, pools in servers.items()))
        self.peers = [peer for found in results for peer in found]
        self._report()
        return self.peers

    async def _beat(self, url: str, pools: list[str]) -> list[Peer]:
        client = self._client(url)
        tags = queue_tags(self.daemon.config, url)
        try:
            async with asyncio.timeout(TIMEOUT_S * 2):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hset(KEY, self.id, self._record(pools, tags))
                    pipe.hgetall(KEY)
                    _, records = await pipe.execute()
        except Exception as exc:  # never a failed tick: the warning is best effort
            if self._errors.get(url) != str(exc):
                self._errors[url] = str(exc)
                log.warning("peer_heartbeat_failed", server=redact_url(url), error=repr(exc))
            return []
        if self._errors.pop(url, None) is not None:
            log.info("peer_heartbeat_recovered", server=redact_url(url))
        self._written.add(url)
        return await self._read(client, url, set(pools), records,
                                {tags[p]: p for p in pools if p in tags})

    async def _read(self, client: RedisClient, url: str, pools: set[str],
                    records: Mapping[Any, Any], by_queue: Mapping[str, str]) -> list[Peer]:
        now = self._wall()
        peers, stale = [], []
        for raw_id, raw in records.items():
            other = raw_id.decode(errors="replace") if isinstance(raw_id, bytes) else str(raw_id)
            if other == self.id:
                continue
            try:
                record = json.loads(raw)
                age = now - float(record["wall"])
                fresh = age <= 3 * float(record.get("period_s", MIN_PERIOD_S)) + 1.0
                shared = pools & {str(p) for p in record.get("pools", [])}
                shared |= {by_queue[q] for q in map(str, record.get("queues", []))
                           if q in by_queue}  # the same queue under another pool name
            except (ValueError, TypeError, KeyError, AttributeError):
                stale.append(raw_id)  # not a record of ours
                continue
            if age > PRUNE_AFTER_S:
                stale.append(raw_id)
            elif fresh and shared:
                peers.append(Peer(other, str(record.get("host", "?")),
                                  int(record.get("pid", 0)), str(record.get("metrics", "?")),
                                  tuple(sorted(shared)), redact_url(url)))
        if stale:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT_S):
                    await client.hdel(KEY, *stale)
        return peers

    def _report(self) -> None:
        now = time.monotonic()
        current = {p.id for p in self.peers}
        for peer in self.peers:
            last = self._seen.get(peer.id)
            if last is None or now - last >= WARN_EVERY_S:
                self._seen[peer.id] = now
                log.warning("other_daemon_acting", other_id=peer.id, other_host=peer.host,
                            other_pid=peer.pid, other_metrics=peer.metrics,
                            pools=list(peer.pools), server=peer.server, daemon_id=self.id,
                            effect="both resize the same groups; configure "
                                   "controller.leader_election or stop one")
        for gone in set(self._seen) - current:
            del self._seen[gone]
            log.info("other_daemon_gone", other_id=gone, daemon_id=self.id)
        if self._gauge is not None:
            self._gauge.set(len(current))

    async def _forget(self, url: str) -> None:
        self._written.discard(url)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT_S):
                await self._client(url).hdel(KEY, self.id)

    async def run(self, stop: asyncio.Event) -> None:
        """A root task: a heartbeat every ``period_s`` until ``stop``, then delete ours."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.period_s)
        finally:
            await self.close()

    async def close(self) -> None:
        for url in list(self._written):
            await self._forget(url)
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
