"""Resume each pool's controller state across restarts and failovers (``controller.state_store``).

Before the first tick the daemon loads every pool's record (one round trip per server); after
each tick it saves them all (one round trip per server, bounded by the store's timeout). A
record is JSON: ``{"format", "fingerprint", "saved_wall", "state", "holds", "watch", "queue",
"baselines"}``, where ``state`` is the ``ControllerState`` through the core's ``StateCodec``
(never pickle: a record read from a shared server cannot run code), ``fingerprint`` digests
what the state is meaningful under (the policy, the SLA, the groups' identity:
``autoscaler.config.to_core.state_fingerprint``), and ``holds``, ``watch`` and ``baselines``
are the pool's capacity holds, boot-watch timings and counter baselines
(``autoscaler.runtime.carryover``), resumed whatever the fingerprint: they describe the
groups and the queue, not the policy (baselines only while ``queue``, a digest of the pool's
queue block, is unchanged: another queue has other counters). ``format`` is
``STATE_FORMAT``; a record of another format is discarded.

Every failure degrades to "no state", never to a failed tick: an unreachable store at start,
an expired, foreign, corrupt or stale-config record (a line ``state_discarded`` with the
reason; ``carryover_discarded`` for bad holds, timings or baselines) means the pool starts
fresh (restart-safe by its guards: a seeded scale-down window and no scale-in before rates
are measured); a failed save is logged (``state_save_failed``) and counted, and the next
tick saves again.

What is not guaranteed:

* Times in the state are the daemon clock's seconds. ``LoopClock`` anchors that clock to the
  wall clock at start-up, so a successor on another host resumes correctly only as far as
  the two hosts' wall clocks agree.
* Without a store (``state_store: none``, or a pool on a non-Redis queue with no ``url``), a
  restart loses the guards' windows and rate-rule history and the policy's estimators (the
  ``sla`` policy's rates, burst latch and error budget; the ``step`` policy's warmup).
* Dry runs and ``--once`` load but never save: they must not overwrite the state of a daemon
  that acts on the same pools. Two acting daemons on the same pools overwrite each other.
* State is saved after the tick, so a crash mid-tick loses that tick's update.
* A pool is written in every tick where what its guards decide on changed (a value entering
  or leaving a stabilization window, a scale event or one leaving the rules' window, the
  fleet's desired size, the first measured rate), or its capacity holds or boot-watch timings
  changed; otherwise once per ``REFRESH_S`` period (30 s, or half the store's ``ttl`` if less;
  every tick at longer intervals). So a crash loses at most that tick's changes plus up to
  ``REFRESH_S`` of refreshes: the times of window entries whose value did not change (a
  scale-down stabilization window or the scale-to-zero idle window resumes measured from up to
  30 s earlier, so a scale-down can come that much sooner than without the crash), the
  policy's estimators' drift (rates, the ``sla`` policy's error budget) and counter baselines
  (the first rate after the restart spans the longer interval). A clean stop writes every
  pool (unless the gate is closed by then: under leader election the lease is handed over
  first). Saving every pool every tick cost ~45 us of CPU per pool
  (``benchmarks/bench_persistence.py``), more than the decision itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import Counter

from autoscaler.config.models import Config, PoolConfig, StateStoreConfig
from autoscaler.config.to_core import STATE_FORMAT, state_fingerprint
from autoscaler.core.availability import BootWatch, Holds
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.core.state_codec import StateCodec, StateCodecError, is_state_type
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import GroupId
from autoscaler.ports.redis_urls import redact_url, redis_url_kind
from autoscaler.ports.source import Baselines, QueueSampler
from autoscaler.ports.state_store import StateStore
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.carryover import (
    baselines_of,
    decode_baselines,
    decode_holds,
    decode_timings,
    fresh_baselines,
    holds_by_pool,
    resume_baselines,
    resume_holds,
    resume_timings,
    timings_of,
)
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.state_store import RedisStateStore
from autoscaler.sources.redis.settings import RedisSettings

log = structlog.get_logger("autoscaler.runtime")

REFRESH_S = 30.0
"""Longest a pool's record goes unwritten while nothing its guards decide on changes."""

RECORD_FIELDS = frozenset(
    {"format", "fingerprint", "saved_wall", "state", "holds", "watch", "queue", "baselines"})


class PoolRuntimeLike(Protocol):
    """What persistence needs of a pool's runtime: its name, controller and current state."""

    name: str
    controller: PoolController
    state: ControllerState


@dataclass(frozen=True, slots=True)
class PoolBinding:
    """Where one pool's state goes and how it is checked."""

    pool: str
    store: StateStore
    codec: StateCodec
    fingerprint: str
    queue: str = ""
    """``queue_identity`` of the pool's queue: saved counter baselines are another queue's
    counters when it differs, and are not resumed."""


@dataclass(frozen=True, slots=True)
class Memory:
    """Where a load puts what the shell remembers besides the controllers."""

    holds: Holds[GroupId] | None
    watches: dict[str, BootWatch[GroupId]] | None
    baselines: dict[str, Baselines]


def codec_for(controller: PoolController) -> StateCodec:
    """A codec for the controller's state: the guards' and controller's types plus the
    policy's (the type of its initial state and any listed in its ``state_types``)."""
    extra: list[type] = list(getattr(controller.policy, "state_types", ()))
    initial = type(controller.policy.initial_state())
    if initial is not type(None) and initial not in extra:
        extra.append(initial)
    return StateCodec(t for t in extra if isinstance(t, type) and is_state_type(t))


class ControllerPersistence:
    """Loads every pool's state once, before the first tick, and saves it after each tick."""

    def __init__(
        self,
        bindings: Sequence[PoolBinding],
        clock: Clock,
        *,
        read_only: bool = False,
        failures: Counter | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self._bindings = {b.pool: b for b in bindings}
        self._stores = list({id(b.store): b.store for b in bindings}.values())
        self._clock = clock
        self.read_only = read_only
        self.loaded = False
        self.save_failures = 0
        """Pools whose save failed, summed over ticks (also ``autoscaler_state_save_failures``)."""
        self._failures = failures
        self.refresh_s = refresh_s
        """0 writes every pool every tick (see the module docstring)."""
        self._written: dict[str, tuple[int, tuple[Any, ...]]] = {}
        """Per pool: the ``_epoch`` its record was last written in and its ``_steady_key``."""
        self._phases: dict[str, float] = {}
        self.skipped = 0
        """Pool records not written because unchanged and fresh, summed over ticks."""

    @property
    def stores(self) -> list[StateStore]:
        return list(self._stores)

    def _by_store(self, pools: Sequence[PoolRuntimeLike]) -> dict[int, list[PoolRuntimeLike]]:
        groups: dict[int, list[PoolRuntimeLike]] = {}
        for rt in pools:
            binding = self._bindings.get(rt.name)
            if binding is not None:
                groups.setdefault(id(binding.store), []).append(rt)
        return groups

    async def load(
        self, pools: Sequence[PoolRuntimeLike], *, holds: Holds[GroupId] | None = None,
        samplers: Sequence[QueueSampler] = (),
        watches: dict[str, BootWatch[GroupId]] | None = None,
    ) -> None:
        """Resume each pool's state from its store, its groups' holds into ``holds``, their
        boot-watch timings into ``watches`` (by pool) and its counter baselines into
        ``samplers``; once (later calls do nothing)."""
        if self.loaded:
            return
        self.loaded = True
        groups = list(self._by_store(pools).values())
        results = await asyncio.gather(
            *(self._bindings[g[0].name].store.load([rt.name for rt in g]) for g in groups),
            return_exceptions=True,
        )
        baselines: dict[str, Baselines] = {}
        for group, result in zip(groups, results, strict=True):
            store = self._bindings[group[0].name].store
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                log.warning("state_load_failed", store=store.location, error=str(result),
                            pools=len(group))
                continue
            for rt in group:
                text = result.get(rt.name)
                if text is not None:
                    self._resume(rt, text, Memory(holds, watches, baselines))
        if baselines:
            resumed = resume_baselines(samplers, baselines)
            if resumed:
                log.info("baselines_resumed", pools=len(resumed))

    def _resume(self, rt: PoolRuntimeLike, text: str, memory: Memory) -> None:
        binding = self._bindings[rt.name]
        try:
            record = self._record(text)
        except StateCodecError as exc:
            log.warning("state_discarded", pool=rt.name, store=binding.store.location,
                        reason=str(exc))
            return
        self._resume_carryover(rt, binding, record, memory)
        try:
            state, saved_wall = self._decode(binding, rt.controller, record)
        except StateCodecError as exc:
            log.warning("state_discarded", pool=rt.name, store=binding.store.location,
                        reason=str(exc))
            return
        rt.state = state
        log.info("state_resumed", pool=rt.name, store=binding.store.location,
                 age_s=round(self._clock.wall() - saved_wall, 3))

    def _resume_carryover(
        self, rt: PoolRuntimeLike, binding: PoolBinding, record: dict[str, Any], memory: Memory,
    ) -> None:
        now = self._clock.monotonic()
        try:
            saved_holds = decode_holds(binding.codec, record["holds"])
            saved_timings = decode_timings(binding.codec, record["watch"])
            saved_baselines = decode_baselines(binding.codec, record["baselines"])
            if not isinstance(record["saved_wall"], int | float):
                raise StateCodecError("saved_wall is not a number")
        except StateCodecError as exc:
            log.warning("carryover_discarded", pool=rt.name, store=binding.store.location,
                        reason=str(exc))
            return
        groups = [g.name for g in rt.controller.spec.groups]
        if memory.holds is not None:
            for group, hold in resume_holds(memory.holds, rt.name, groups, saved_holds, now):
                log.info("hold_resumed", pool=rt.name, group=group, reason=hold.reason,
                         remaining_s=round(max(0.0, hold.until - now), 3), hold_s=hold.hold_s)
        timeout = rt.controller.spec.capacity.boot_timeout_s
        if memory.watches is not None and saved_timings and timeout is not None:
            watch = memory.watches.setdefault(rt.name, BootWatch(timeout))
            age = self._clock.wall() - float(record["saved_wall"])
            resumed = resume_timings(watch, rt.name, groups, saved_timings, age)
            if resumed:
                log.info("boot_watch_resumed", pool=rt.name, groups=resumed)
        if saved_baselines is not None and record["queue"] == binding.queue:
            fresh = fresh_baselines(saved_baselines, now)
            if fresh is not None:
                memory.baselines[rt.name] = fresh

    @staticmethod
    def _record(text: str) -> dict[str, Any]:
        """The record's fields, of this ``STATE_FORMAT``; ``StateCodecError`` otherwise."""
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise StateCodecError(f"not JSON: {exc}") from None
        if not isinstance(record, dict) or "format" not in record:
            raise StateCodecError("not a controller state record")
        if record["format"] != STATE_FORMAT:
            raise StateCodecError(f"state format {record['format']!r}, expected {STATE_FORMAT}")
        if set(record) != RECORD_FIELDS:
            raise StateCodecError("not a controller state record")
        return record

    @staticmethod
    def _decode(
        binding: PoolBinding, controller: PoolController, record: dict[str, Any]
    ) -> tuple[ControllerState, float]:
        if record["fingerprint"] != binding.fingerprint:
            raise StateCodecError("saved under another config (the policy, its parameters, "
                                  "the SLA or the groups changed)")
        saved_wall = record["saved_wall"]
        if not isinstance(saved_wall, int | float):
            raise StateCodecError("saved_wall is not a number")
        state = binding.codec.decode(record["state"])
        if not isinstance(state, ControllerState):
            raise StateCodecError(f"not a controller state: {type(state).__name__}")
        expected = type(controller.policy.initial_state())
        if type(state.policy) is not expected:
            raise StateCodecError(
                f"policy state is a {type(state.policy).__name__}, expected {expected.__name__}"
            )
        return state, float(saved_wall)

    def _epoch(self, pool: str, now: float) -> int:
        """Which of the pool's ``refresh_s`` periods ``now`` falls in: an unchanged pool is
        written once per period (never more than ``refresh_s`` apart). Each pool's periods
        are shifted by a fixed share of ``refresh_s``, so pools unchanged since the same tick
        are due in different ticks rather than all in one (as costly as writing them all)."""
        phase = self._phases.get(pool)
        if phase is None:
            phase = self._phases[pool] = (zlib.crc32(pool.encode()) % 1024) / 1024
        return math.floor(now / self.refresh_s + phase)

    def forget_written(self) -> None:
        """Write every pool at the next save: another daemon may have written meanwhile
        (this one stood by behind a closed gate)."""
        self._written.clear()

    async def save(
        self, pools: Sequence[PoolRuntimeLike], *, holds: Holds[GroupId] | None = None,
        samplers: Sequence[QueueSampler] = (),
        watches: Mapping[str, BootWatch[GroupId]] | None = None,
    ) -> None:
        """Save each pool's state (with its groups' holds and boot-watch timings and its
        counter baselines) when it changed or is due (see the module docstring), one call
        per store; failures are logged and counted."""
        if self.read_only:
            return
        wall = self._clock.wall()
        now = self._clock.monotonic()
        held = holds_by_pool(holds, now) if holds is not None else {}
        baselines = baselines_of(samplers)
        calls: list[tuple[StateStore, dict[str, str]]] = []
        keys: dict[str, tuple[Any, ...]] = {}
        for group in self._by_store(pools).values():
            binding = self._bindings[group[0].name]
            records: dict[str, str] = {}
            for rt in group:
                pool_held = held.get(rt.name, {})
                pool_timings = timings_of((watches or {}).get(rt.name))
                key: tuple[Any, ...] = ()
                if self.refresh_s > 0:
                    key = _steady_key(rt.state, pool_held, pool_timings,
                                      policy_steady_key(rt.controller, rt.state))
                    written = self._written.get(rt.name)
                    if (written is not None and written[0] == self._epoch(rt.name, now)
                            and written[1] == key):
                        self.skipped += 1
                        continue
                binding_of = self._bindings[rt.name]
                codec = binding_of.codec
                try:
                    encoded = codec.encode(rt.state)
                    pool_holds = codec.encode(pool_held)
                    timings = codec.encode(pool_timings)
                    pool_baselines = codec.encode(baselines.get(rt.name))
                except StateCodecError as exc:
                    log.warning("state_not_saved", pool=rt.name, reason=str(exc))
                    continue
                records[rt.name] = json.dumps(
                    {"format": STATE_FORMAT, "fingerprint": self._bindings[rt.name].fingerprint,
                     "saved_wall": wall, "state": encoded, "holds": pool_holds,
                     "watch": timings, "queue": binding_of.queue,
                     "baselines": pool_baselines},
                    separators=(",", ":"), allow_nan=False,
                )
                keys[rt.name] = key
            if records:
                calls.append((binding.store, records))
        results = await asyncio.gather(
            *(store.save(records) for store, records in calls), return_exceptions=True
        )
        for (store, records), result in zip(calls, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                self.save_failures += len(records)
                if self._failures is not None:
                    self._failures.inc(len(records))
                log.warning("state_save_failed", store=store.location, error=str(result),
                            pools=len(records))
                for pool in records:  # written again at the next save
                    self._written.pop(pool, None)
                continue
            if self.refresh_s > 0:
                for pool in records:
                    self._written[pool] = (self._epoch(pool, now), keys[pool])

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._stores), return_exceptions=True)


def _steady_key(
    state: ControllerState, held: Mapping[str, Any], timings: Mapping[str, Any],
    policy: Hashable = None,
) -> tuple[Any, ...]:
    """What a restart must not lose: the guards' window values (not the refreshed times of
    unchanged ones, nor ``last_active`` while demand lasts), scale events, the first tick and
    the expected size, whether rates were measured; the holds and boot-watch timings; what
    the policy names (``policy_steady_key``).
    Compared with ``==`` each tick instead of encoding the record (~4 us against ~45)."""
    g = state.guards
    return (tuple(v for _, v in g.highs), tuple(v for _, v in g.lows), g.up_events,
            g.down_events, g.last_active is None, g.started, g.measured, g.fleet_desired,
            held, timings, policy)


def policy_steady_key(controller: PoolController, state: ControllerState) -> Hashable:
    """The part of the policy's state it asks saves not to skip (``steady_key``, optional on
    a policy; see ``autoscaler.core.policy.Policy``), else ``None``."""
    steady = getattr(controller.policy, "steady_key", None)
    return steady(state.policy) if steady is not None else None


def queue_identity(pool: PoolConfig) -> str:
    """A digest of the pool's queue block (kind and settings, URLs with their password
    redacted): which counters the saved baselines were read from."""
    settings = pool.queue.settings.model_dump(mode="json")
    for name, value in settings.items():
        if isinstance(value, str) and "://" in value:
            settings[name] = redact_url(value)
    text = json.dumps({"kind": pool.queue.kind, "settings": settings}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _store_url(pool: PoolConfig, settings: StateStoreConfig) -> str | None:
    """The configured URL, else the pool's Redis queue URL (not a Cluster's: the store reads
    all pools with one MGET), else none (no persistence)."""
    if settings.url is not None:
        return settings.url
    queue = pool.queue.settings
    if isinstance(queue, RedisSettings) and redis_url_kind(str(queue.url)) != "cluster":
        return str(queue.url)
    return None


def build_persistence(
    config: Config,
    pools: Sequence[PoolRuntimeLike],
    clock: Clock,
    telemetry: Telemetry | None = None,
    *,
    read_only: bool = False,
) -> ControllerPersistence | None:
    """The persistence of ``config.controller.state_store`` for these pools, or ``None`` when
    no pool persists. One store (one connection pool) per server URL."""
    settings = config.controller.state_store
    if settings is None:
        return None
    stores: dict[str, RedisStateStore] = {}
    bindings = []
    for rt in pools:
        pool = config.pool(rt.name)
        url = _store_url(pool, settings)
        if url is None:
            continue
        store = stores.get(url)
        if store is None:
            store = stores[url] = RedisStateStore(
                url, prefix=settings.prefix, ttl_s=settings.ttl, timeout_s=settings.timeout
            )
        fingerprint = state_fingerprint(rt.controller.spec, pool.policy.kind, pool.policy.params)
        bindings.append(PoolBinding(rt.name, store, codec_for(rt.controller), fingerprint,
                                    queue_identity(pool)))
    if not bindings:
        return None
    failures: Counter | None = None
    if isinstance(telemetry, PrometheusTelemetry):  # one counter per registry: a reload rebuilds
        failures = telemetry.state_save_failures
    log.info("state_store_configured", stores=[s.location for s in stores.values()],
             pools=[b.pool for b in bindings], read_only=read_only)
    # a record must be rewritten before it expires, however long nothing changes
    return ControllerPersistence(bindings, clock, read_only=read_only, failures=failures,
                                 refresh_s=min(REFRESH_S, settings.ttl / 2))

