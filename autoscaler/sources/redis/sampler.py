"""One sampler per Redis URL: every pool on it measured in one round trip per tick.

The round trip is a non-transactional pipeline of ``EVALSHA`` calls (one per ``CHUNK`` pools,
see ``redis_probe``), bounded by ``asyncio.timeout(timeout_s)``. A failed round (connection
refused, timeout, server error) never raises: every pool gets its last known observation with
``fresh=False`` and no rates (depth 0 and nothing else if it was never measured), and a
``queue_sample_failed`` warning names the URL with its password redacted: once per change of
error (a 20 s outage at 100 ms ticks is one line, not 200), then ``queue_sample_recovered``
when the server answers again (``autoscaler.sources.polled.SampleFailures``). The guards hold the
fleet on stale data, so repeating the last known depth cannot cause a scale-in. redis-py
reconnects on the next tick; a timeout mid-reply discards that connection.

Rates come from counter deltas over the injected clock's monotonic time, through the core's
one helper (``autoscaler.core.rates``): the first sample, an absent counter or a counter that
went backwards (reset) gives ``None`` for that tick. A failed round leaves the previous counter
reading in place, so the next good one averages over the gap.

An implausible head enqueue time (``autoscaler.core.plausibility``: future beyond the skew,
before 2001, non-finite, milliseconds) gives ``oldest_wait_s=None`` (unknown) on a fresh
observation and is counted in ``self.invalid`` with a rate-limited warning; so is a list head
with no readable top-level ``enqueued_at`` (reason ``unreadable``: not JSON, a wrong type, a
nested or missing key, or one past the scanned prefix of a huge payload).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import redis.asyncio as aioredis
import structlog
from pydantic import BaseModel
from redis.exceptions import NoScriptError

from autoscaler.core.model import Observation
from autoscaler.core.plausibility import UNREADABLE, classify_enqueue_time
from autoscaler.core.rates import RateMeter
from autoscaler.ports.clock import Clock
from autoscaler.ports.observations import InvalidObservations
from autoscaler.sources.polled import SampleFailures
from autoscaler.sources.redis.probe import (
    CHUNK,
    SCRIPT,
    SCRIPT_SHA,
    Probe,
    call_args,
    decode,
    head_seconds,
    split_reply,
)
from autoscaler.sources.redis.settings import RedisSettings, redact_url

log = structlog.get_logger(__name__)

_ROUND = ("round",)
"""The failure key of a whole round (pool names are strings: no clash)."""


@dataclass(slots=True)
class _Pool:
    name: str
    probe: Probe
    arrivals: RateMeter = field(default_factory=RateMeter)
    completions: RateMeter = field(default_factory=RateMeter)
    last: Observation | None = None


def probe_for(settings: BaseModel) -> Probe:
    """The probe of one pool's settings; the settings class says which kind it is."""
    if not isinstance(settings, RedisSettings):
        raise TypeError(f"not a Redis queue: {type(settings).__name__}")
    return settings.probe()


class RedisSampler:
    """Samples all pools of one Redis URL together (see the module docstring)."""

    def __init__(
        self,
        pools: Sequence[tuple[str, BaseModel]],
        clock: Clock,
        timeout_s: float,
        *,
        chunk: int = CHUNK,
    ) -> None:
        if not pools:
            raise ValueError("a RedisSampler needs at least one pool")
        if timeout_s <= 0 or chunk < 1:
            raise ValueError("timeout_s must be > 0 and chunk >= 1")
        urls = {getattr(settings, "url", None) for _, settings in pools}
        if len(urls) != 1:
            raise ValueError(f"one RedisSampler serves one URL, got {len(urls)}")
        url = str(urls.pop())
        self.url = redact_url(url)
        self._clock = clock
        self._timeout_s = timeout_s
        self.invalid = InvalidObservations()
        """Implausible enqueue times seen; the daemon points its ``sink`` at telemetry."""
        self._failures = SampleFailures(log)
        self._pools = [_Pool(name, probe_for(settings)) for name, settings in pools]
        self._calls = [
            (self._pools[i : i + chunk], call_args([p.probe for p in self._pools[i : i + chunk]]))
            for i in range(0, len(self._pools), chunk)
        ]
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, health_check_interval=0
        )

    async def sample(self) -> Mapping[str, Observation]:
        """One round trip for all pools; never raises (a failed round gives stale values)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._round_trip()
        except Exception as exc:  # any failure of the I/O: report stale data, keep the loop alive
            if isinstance(exc, TimeoutError):
                error = f"no answer within the sample timeout ({self._timeout_s:g} s)"
            else:
                error = str(exc) or type(exc).__name__
            self._failures.failed(_ROUND, error, url=self.url, error_type=type(exc).__name__,
                                  pools=len(self._pools))
            return self._stale_all(self._clock.monotonic())
        self._failures.recovered(_ROUND, url=self.url, pools=len(self._pools))
        now, wall = self._clock.monotonic(), self._clock.wall()
        out: dict[str, Observation] = {}
        for (pools, _), reply in zip(self._calls, replies, strict=True):
            rows = split_reply(reply, len(pools))
            chunk = ("chunk", pools[0].name)
            if rows is None:
                self._failures.failed(chunk, str(reply)[:200], url=self.url,
                                      error_type=type(reply).__name__, pools=len(pools))
                out.update((p.name, self._stale(p, now)) for p in pools)
                continue
            self._failures.recovered(chunk, url=self.url, pools=len(pools))
            for pool, row in zip(pools, rows, strict=True):
                out[pool.name] = self._observe(pool, row, now, wall)
        return out

    async def close(self) -> None:
        await self._client.aclose()

    async def _round_trip(self) -> list[object]:
        replies = await self._execute()
        if any(isinstance(r, NoScriptError) for r in replies):
            # First tick, or the server restarted / flushed its scripts: load and go again.
            await self._client.script_load(SCRIPT)
            replies = await self._execute()
        return replies

    async def _execute(self) -> list[object]:
        async with self._client.pipeline(transaction=False) as pipe:
            for _, args in self._calls:
                pipe.evalsha(SCRIPT_SHA, *args)  # type: ignore[arg-type]
            replies: list[object] = await pipe.execute(raise_on_error=False)
            return replies

    def _observe(self, pool: _Pool, row: list[str], now: float, wall: float) -> Observation:
        """One pool's row to an observation. The common row (``ok`` with integer fields) is
        read inline, since this runs for every pool on every tick; anything else goes through
        ``decode``, which names what is wrong."""
        try:
            tag, depth_s, head, in_flight_s, arrivals_s, completed_s = row
            if tag != "ok":
                raise ValueError(tag)
            depth = int(depth_s)
            depth = depth if depth > 0 else 0
            in_flight = int(in_flight_s) if in_flight_s else None
            arrivals = int(arrivals_s) if arrivals_s else None
            completed = int(completed_s) if completed_s else None
            head_time = head_seconds(pool.probe, head) if head and depth else None
        except ValueError:  # not the common row: decode names the problem
            error = decode(pool.probe, row).error or f"unexpected probe reply {row!r:.80}"
            self._failures.failed(pool.name, error, url=self.url, pool=pool.name)
            return self._stale(pool, now)
        if self._failures.failing(pool.name):
            self._failures.recovered(pool.name, url=self.url, pool=pool.name)
        wait = 0.0 if depth == 0 else None  # nobody waits in an empty queue: known, not unknown
        if head_time is not None:
            reason = classify_enqueue_time(head_time, wall)
            if reason is None:
                wait = wall - head_time
                wait = wait if wait > 0.0 else 0.0
            else:  # unknown, never a 57-year wait nor a hidden one
                self.invalid.record(pool.name, reason, head_time)
        elif depth and pool.probe.kind == "list":  # a head with no readable time: say so
            self.invalid.record(pool.name, UNREADABLE, None)
        obs = Observation(
            time=now,
            depth=depth,
            oldest_wait_s=wait,
            in_flight=in_flight,
            arrival_rate=pool.arrivals.update(now, arrivals),
            completion_rate=pool.completions.update(now, completed),
        )
        pool.last = obs
        return obs

    def _stale(self, pool: _Pool, now: float) -> Observation:
        if pool.last is None:
            return Observation(time=now, depth=0, fresh=False)
        return replace(pool.last, time=now, arrival_rate=None, completion_rate=None, fresh=False)

    def _stale_all(self, now: float) -> dict[str, Observation]:
        return {p.name: self._stale(p, now) for p in self._pools}
