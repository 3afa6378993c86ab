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
reading in place, so the next good one averages over the gap. The baselines are saved with
each pool's state and resumed after a restart (``baselines``/``resume_baselines``, the
``CounterBaselines`` port), so a restarted daemon measures rates from its first tick.

An implausible head enqueue time (``autoscaler.core.plausibility``: future beyond the skew,
before 2001, non-finite, milliseconds) gives ``oldest_wait_s=None`` (unknown) on a fresh
observation and is counted in ``self.invalid`` with a rate-limited warning; so is a list head
with no readable top-level ``enqueued_at`` (reason ``unreadable``: not JSON, a wrong type, a
nested or missing key, or one past the scanned prefix of a huge payload).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import structlog
from pydantic import BaseModel
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from autoscaler.core.model import Observation
from autoscaler.core.plausibility import UNREADABLE, classify_enqueue_time
from autoscaler.core.rates import Reading, counter_rate
from autoscaler.ports.clock import Clock
from autoscaler.ports.observations import InvalidObservations
from autoscaler.ports.source import Baselines
from autoscaler.sources.polled import SampleFailures
from autoscaler.sources.redis.connect import is_cluster, redis_client
from autoscaler.sources.redis.observations import observation
from autoscaler.sources.redis.probe import (
    CHUNK,
    SCRIPT,
    SCRIPT_SHA,
    Probe,
    call_args,
    decode,
    split_reply,
)
from autoscaler.sources.redis.settings import RedisSettings, redact_url

log = structlog.get_logger(__name__)

CLUSTER_CONCURRENCY = 32
"""Script calls in flight at once on Redis Cluster (one per hash slot sampled)."""

_ROUND = ("round",)
"""The failure key of a whole round (pool names are strings: no clash)."""


@dataclass(slots=True)
class _Pool:
    name: str
    probe: Probe
    stream: bool = False
    """The head field is a stream ID (milliseconds), not unix seconds."""
    arrivals: Reading | None = None
    """Baselines of the two counters for ``counter_rate`` (the core's one rate helper, called
    directly: a ``RateMeter`` per counter costs a method call per pool per tick)."""
    completions: Reading | None = None
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
        self._pools = [_Pool(name, probe, probe.kind == "stream")
                       for name, probe in ((n, probe_for(s)) for n, s in pools)]
        self._cluster = is_cluster(url)
        self._packed: dict[int, list[bytes]] = {}
        """Each call's EVALSHA as encoded by redis-py (encoding is per client, not per tick)."""
        self._calls = [
            (part, call_args([p.probe for p in part], route))
            for group, route in self._slot_groups(url)
            for part in (group[i : i + chunk] for i in range(0, len(group), chunk))
        ]
        self._client = redis_client(url, socket_connect_timeout=timeout_s,
                                    health_check_interval=0)

    def _slot_groups(self, url: str) -> list[tuple[list[_Pool], str | None]]:
        """All pools in one group on one server; on Redis Cluster one group per hash slot,
        routed by its first key (the settings made every companion key share that slot)."""
        if not is_cluster(url):
            return [(self._pools, None)]
        by_slot: dict[int, list[_Pool]] = {}
        for pool in self._pools:
            by_slot.setdefault(key_slot(pool.probe.key.encode()), []).append(pool)
        return [(group, group[0].probe.key) for group in by_slot.values()]

    async def sample(self) -> Mapping[str, Observation]:
        """One round trip for all pools; never raises (a failed round gives stale values)."""
        out: dict[str, Observation] = {}
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._round_trip(out)
        except Exception as exc:  # any failure of the I/O: report stale data, keep the loop alive
            if isinstance(exc, TimeoutError):
                error = f"no answer within the sample timeout ({self._timeout_s:g} s)"
            else:
                error = str(exc) or type(exc).__name__
            self._failures.failed(_ROUND, error, url=self.url, error_type=type(exc).__name__,
                                  pools=len(self._pools))
            return self._stale_all(self._clock.monotonic())
        self._failures.recovered(_ROUND, url=self.url, pools=len(self._pools))
        return out

    async def close(self) -> None:
        await self._client.aclose()

    def baselines(self) -> Mapping[str, Baselines]:
        """The counters' last readings per pool (``CounterBaselines``: saved with the pool's
        state, so a restarted daemon has rates from its first tick)."""
        return {p.name: (p.arrivals, p.completions) for p in self._pools
                if p.arrivals is not None or p.completions is not None}

    def resume_baselines(self, baselines: Mapping[str, Baselines]) -> list[str]:
        """Saved readings become the baselines of pools not sampled yet (a live baseline is
        newer); the next reading's rate averages over the gap since the saved one."""
        resumed = []
        for pool in self._pools:
            saved = baselines.get(pool.name)
            if saved is None or pool.arrivals is not None or pool.completions is not None:
                continue
            pool.arrivals, pool.completions = saved
            resumed.append(pool.name)
        return resumed

    async def _round_trip(self, out: dict[str, Observation]) -> None:
        missing = await self._execute(range(len(self._calls)), out)
        if missing:
            # First tick, or the server restarted / flushed its scripts: load and go again.
            await self._client.script_load(SCRIPT)
            for index in await self._execute(missing, out):
                self._take(index, NoScriptError("probe script not loaded"), out)

    async def _execute(self, indexes: Sequence[int], out: dict[str, Observation]) -> list[int]:
        """Send the calls ``indexes`` and decode each reply AS IT ARRIVES, so that Python
        decodes one chunk while Redis runs the next (on a multi-core host the two overlap).
        Returns the calls that found no script loaded."""
        if self._cluster:
            replies = await self._execute_cluster(indexes)
            return [i for i, reply in zip(indexes, replies, strict=True)
                    if self._take(i, reply, out)]
        pool = self._client.connection_pool
        try:
            conn = await pool.get_connection()
        except TypeError:  # redis-py < 5.3 needs a command name
            conn = await pool.get_connection("EVALSHA")
        missing = []
        try:
            packed: list[bytes] = []
            for i in indexes:
                if i not in self._packed:  # the same bytes every tick: encoded once
                    self._packed[i] = conn.pack_command("EVALSHA", SCRIPT_SHA, *self._calls[i][1])
                packed += self._packed[i]
            await conn.send_packed_command(packed)
            for index in indexes:  # pipelined: every reply is read, errors included
                reply: object
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # read whole: the connection stays in step
                    reply = exc
                if self._take(index, reply, out):
                    missing.append(index)
        except BaseException:
            await conn.disconnect()  # replies may be pending: never reuse it
            raise
        finally:
            await pool.release(conn)
        return missing

    def _take(self, index: int, reply: object, out: dict[str, Observation]) -> bool:
        """Decode call ``index``'s reply into ``out``; ``True`` if it found no script."""
        if isinstance(reply, NoScriptError):
            return True
        pools = self._calls[index][0]
        now, wall = self._clock.monotonic(), self._clock.wall()
        rows = split_reply(reply, len(pools))
        chunk = ("chunk", pools[0].name)
        if rows is None:
            self._failures.failed(chunk, str(reply)[:200], url=self.url,
                                  error_type=type(reply).__name__, pools=len(pools))
            out.update((p.name, self._stale(p, now)) for p in pools)
            return False
        self._failures.recovered(chunk, url=self.url, pools=len(pools))
        for pool, row in zip(pools, rows, strict=True):
            out[pool.name] = self._observe(pool, row, now, wall)
        return False

    async def _execute_cluster(self, indexes: Sequence[int]) -> list[object]:
        """redis-py refuses scripts in cluster pipelines: the calls (one per hash slot, each
        routed to its node) go concurrently instead, at most ``CLUSTER_CONCURRENCY`` at once,
        and a failed call is returned in its place like a pipeline's error. A call that failed
        other than with a Redis error reply is tried once more, alone: redis-py 8's cluster
        client can lose a race between concurrent first connections to one node."""
        gate = asyncio.Semaphore(CLUSTER_CONCURRENCY)

        async def one(args: list[str | int]) -> object:
            async with gate:
                try:
                    reply: object = await self._client.evalsha(SCRIPT_SHA, *args)
                except Exception as exc:
                    return exc
                return reply

        replies = list(await asyncio.gather(*(one(self._calls[i][1]) for i in indexes)))
        for n, (index, reply) in enumerate(zip(indexes, replies, strict=True)):
            if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                replies[n] = await one(self._calls[index][1])
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
            head_time = None
            if head and depth:
                head_time = int(head.partition("-")[0]) / 1000.0 if pool.stream else float(head)
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
        arrival_rate, pool.arrivals = counter_rate(pool.arrivals, now, arrivals)
        completion_rate, pool.completions = counter_rate(pool.completions, now, completed)
        obs = observation(now, depth, wait, in_flight, arrival_rate, completion_rate)
        pool.last = obs
        return obs

    def _stale(self, pool: _Pool, now: float) -> Observation:
        if pool.last is None:
            return Observation(time=now, depth=0, fresh=False)
        return replace(pool.last, time=now, arrival_rate=None, completion_rate=None, fresh=False)

    def _stale_all(self, now: float) -> dict[str, Observation]:
        return {p.name: self._stale(p, now) for p in self._pools}
