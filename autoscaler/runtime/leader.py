"""One actor among replicas: a lease behind the actuation gate (Redis here; a Kubernetes Lease
in ``autoscaler.runtime.kube_lease``, same gate and fencing).

``RedisLease`` holds ``key`` with ``SET NX PX ttl``; its value is ``<holder>:<fence>``, where
``fence`` comes from ``INCR <key>:fence`` on every acquisition, so each term of leadership has a
token no earlier term had. Renew and release are compare-and-set Lua scripts: only the holder
whose exact value is in the key may extend or delete it.

``LeaderGate`` is the ``ActuationGate`` of a replica that takes part: every replica samples,
decides and exports metrics (warm state); only the one whose lease is valid is open. Its
``run`` coroutine is a supervised root task: try to acquire every tick (at most every
``ttl / 3``) while a standby, renew every ``ttl / 3`` while the holder, release on shutdown.
``confirm`` is called by each group actuator right before a resize: it reads the key, so a
replica whose lease was deleted or taken over drops its queued resizes at once instead of at
its next renewal.

What is not guaranteed: the providers do not check the fencing token, so a resize that passed
``confirm`` just before the lease changed hands can still land (a window of one Redis round trip
plus the call). A replica that cannot reach Redis keeps acting until its local copy of the lease
expires (measured from when the renewal was *sent*, minus a margin for clock-rate drift), while
another replica may acquire it only after the server-side expiry: the two never overlap unless
the server's clock runs fast by more than the margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from autoscaler.config.controller import LeaderElectionConfig
from autoscaler.ports.clock import Clock
from autoscaler.ports.redis_urls import redact_url
from autoscaler.sources.redis.connect import redis_client

log = structlog.get_logger("autoscaler.runtime")

DRIFT_MARGIN = 0.1
"""Fraction of the TTL given up locally: the lease is treated as lost this much earlier."""

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
  return fence
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """The lease primitives on one Redis server (see the module docstring)."""

    def __init__(self, url: str, key: str, ttl_s: float, *, holder: str | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.url = url
        self.key = key
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.holder = holder or uuid.uuid4().hex
        self.token: str | None = None
        """``<holder>:<fence>`` while held (as last known here), else None."""
        self._client = redis_client(
            url, socket_connect_timeout=ttl_s / 3, socket_timeout=ttl_s / 3,
            health_check_interval=0,
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    @property
    def location(self) -> str:
        return f"{redact_url(self.url)} {self.key}"

    @property
    def fence(self) -> int | None:
        return None if self.token is None else int(self.token.rpartition(":")[2])

    async def acquire(self) -> bool:
        fence = int(await self._acquire(keys=[self.key, self.key + ":fence"],
                                        args=[self.holder, self.ttl_ms]))
        self.token = f"{self.holder}:{fence}" if fence else None
        return self.token is not None

    async def renew(self) -> bool:
        """Extend the lease if this holder's token is still the key's value."""
        if self.token is None:
            return False
        if not int(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms])):
            self.token = None
        return self.token is not None

    async def holds(self) -> bool:
        """Whether the key still carries this holder's token (one GET: the fencing check)."""
        if self.token is None:
            return False
        value = await self._client.get(self.key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if value != self.token:
            self.token = None
        return self.token is not None

    async def release(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            await self._release(keys=[self.key], args=[token])

    async def close(self) -> None:
        await self._client.aclose()


class Lease(Protocol):
    """A lease backend: ``RedisLease`` here, ``KubernetesLease`` (``runtime.kube_lease``)."""

    ttl_ms: int
    token: str | None

    @property
    def location(self) -> str: ...

    @property
    def fence(self) -> int | None: ...

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def holds(self) -> bool: ...

    async def release(self) -> None: ...

    async def close(self) -> None: ...


def make_lease(election: LeaderElectionConfig) -> Lease:
    """The lease of ``controller.leader_election`` (no I/O: clients connect on first use)."""
    if election.backend == "kubernetes":
        from autoscaler.runtime.kube_lease import KubernetesLease  # the optional extra

        return KubernetesLease(election.namespace, election.name, election.ttl,
                               kubeconfig=election.kubeconfig, context=election.context)
    assert election.url is not None  # checked by the config
    return RedisLease(election.url, election.key, election.ttl)


class LeaderGate:
    """The actuation gate of a replica in leader election (see the module docstring)."""

    def __init__(
        self,
        lease: Lease,
        clock: Clock,
        *,
        on_change: Callable[[bool], None] | None = None,
        retry_s: float | None = None,
    ) -> None:
        self.lease = lease
        self.clock = clock
        self.ttl_s = lease.ttl_ms / 1000
        self.retry_s = self.ttl_s / 3
        """How often a standby tries to acquire: the daemon passes its tick interval, so a
        standby takes a lease that expired within one tick (failover <= ttl + one tick; at
        ``ttl / 3`` alone a SIGKILLed actor's lease was taken up to 1.33 s after the kill
        at ttl 1 s). The holder renews every ``ttl / 3`` whatever this is."""
        if retry_s is not None:
            self.set_retry(retry_s)
        self._valid_until = 0.0
        self._leader = False
        self._on_change = on_change
        if on_change is not None:
            on_change(False)

    def set_retry(self, interval_s: float) -> None:
        """Follow a new tick interval (a config reload): a standby's next wait uses it, capped
        at ``ttl / 3``; a wait already under way ends at its old period (at most ``ttl / 3``)."""
        self.retry_s = min(interval_s, self.ttl_s / 3)

    # ------------------------------------------------------------------ ActuationGate

    def is_open(self) -> bool:
        return self._leader and self.clock.monotonic() < self._valid_until

    @property
    def why_closed(self) -> str:
        return "" if self.is_open() else "not_leader"

    async def confirm(self) -> bool:
        """Right before a resize: still the leader, by the key itself (the fencing check)."""
        if not self.is_open():
            return False
        try:
            async with asyncio.timeout(self.ttl_s / 3):
                held = await self.lease.holds()
        except Exception as exc:  # cannot tell: do not act on a lease we cannot confirm
            log.warning("leader_confirm_failed", lease=self.lease.location, error=repr(exc))
            return False
        if not held:
            self._set(False, "lease_taken")
        return held

    # ------------------------------------------------------------------ the lease task

    async def step(self) -> None:
        """One acquire-or-renew round; errors keep the local lease until it expires."""
        sent = self.clock.monotonic()
        try:
            async with asyncio.timeout(self.ttl_s / 3):
                if self._leader:
                    held = await self.lease.renew()
                else:
                    held = await self.lease.acquire()
        except Exception as exc:
            log.warning("leader_lease_error", lease=self.lease.location, error=repr(exc),
                        leader=self.is_open())
            if self._leader and self.clock.monotonic() >= self._valid_until:
                self._set(False, "lease_expired")
            return
        if held:
            self._valid_until = sent + self.ttl_s * (1 - DRIFT_MARGIN)
            self._set(True, "acquired")
        elif self._leader:
            self._set(False, "lease_taken")

    async def run(
        self, stop: asyncio.Event,
        before_release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Acquire every ``retry_s`` or renew every ``ttl / 3`` until ``stop``; then release
        the lease. ``before_release`` runs first while the gate is still open (bounded by
        ttl/3): the daemon flushes the state that ticks skipped as unchanged, which only the
        actor may write, so a planned handover loses none of it."""
        try:
            while not stop.is_set():
                await self.step()
                await self._expire_or_wait(stop)
        finally:
            was_leader = self._leader
            if was_leader and before_release is not None:
                try:
                    async with asyncio.timeout(self.ttl_s / 3):
                        await before_release()
                except Exception as exc:  # the lease still goes; the state is at most 30 s old
                    log.warning("leader_before_release_failed", lease=self.lease.location,
                                error=repr(exc))
            self._set(False, "released")
            if was_leader:
                try:
                    async with asyncio.timeout(self.ttl_s / 3):
                        await self.lease.release()
                except Exception as exc:  # it expires by itself within the TTL
                    log.warning("leader_release_failed", lease=self.lease.location,
                                error=repr(exc))
            await self.lease.close()

    async def _expire_or_wait(self, stop: asyncio.Event) -> None:
        period = self.retry_s
        if self._leader:  # renew; wake at the local expiry if that comes first
            period = max(0.0, min(self.ttl_s / 3, self._valid_until - self.clock.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period)
        if self._leader and self.clock.monotonic() >= self._valid_until:
            self._set(False, "lease_expired")

    def _set(self, leader: bool, why: str) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if leader:
            log.info("leader_acquired", lease=self.lease.location, fence=self.lease.fence,
                     ttl_s=self.ttl_s)
        else:
            self._valid_until = 0.0
            log.warning("leader_lost", lease=self.lease.location, reason=why)
        if self._on_change is not None:
            self._on_change(leader)
