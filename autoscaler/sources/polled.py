"""What the sources that ask a server once per pool share: the tick's fan-out, its deadline,
stale observations on failure, plausibility of head times and rates.

The Redis kinds measure every pool of a server in one scripted round trip; Prometheus, SQS,
RabbitMQ and NATS JetStream have no such batch call, so their samplers ask once per pool, all
pools concurrently (at most ``concurrency`` requests in flight), each read under the tick's
``sample_timeout``. A pool whose read fails or is late gets its last known observation with
``fresh=False`` and no rates (depth 0 if never measured), exactly as a failed Redis round; the
others stay fresh. The guards hold the fleet on stale data, so a source outage never scales in.

Failures are logged as ``queue_sample_failed`` naming the source kind, the pool and the queue,
once per change of message per pool (an outage at 1 s ticks is one line, not 3,600), and
``queue_sample_recovered`` when the pool reads again.

This module is not a source: it names no kind and imports none, so the sources that use it stay
independent of each other (import-linter).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, TypeVar, cast

import structlog
from pydantic import BaseModel

from autoscaler.core.model import Observation
from autoscaler.core.plausibility import classify_enqueue_time
from autoscaler.core.rates import RateMeter
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import SourceError
from autoscaler.ports.observations import InvalidObservations
from autoscaler.ports.redis_urls import redact_url  # any scheme's user-info, not only Redis

log = structlog.get_logger(__name__)

S = TypeVar("S", bound=BaseModel)

DEFAULT_CONCURRENCY = 32
"""Requests one sampler keeps in flight: enough to read hundreds of pools within a tick
without opening hundreds of connections to one server at once."""


class SampleFailures:
    """Logs ``queue_sample_failed`` once per change of error per key (a pool, or a whole
    server's round) and ``queue_sample_recovered`` when that key reads again: an outage at
    100 ms ticks is one line, not ten a second. Every sampler logs through one of these."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger if logger is not None else log
        self._last: dict[Hashable, str] = {}

    def failed(self, key: Hashable, error: str, **fields: Any) -> None:
        if self._last.get(key) != error:
            self._log.warning("queue_sample_failed", error=error, **fields)
        self._last[key] = error

    def recovered(self, key: Hashable, **fields: Any) -> None:
        if self._last and self._last.pop(key, None) is not None:
            self._log.info("queue_sample_recovered", **fields)

    def failing(self, key: Hashable) -> bool:
        return key in self._last


@dataclass(frozen=True, slots=True)
class Reading:
    """What one pool's read found. ``None`` is unknown, never zero.

    The wait is given either as the head's enqueue time (``oldest_enqueued_at``, wall seconds,
    judged by ``autoscaler.core.plausibility``) or as a wait the server measured itself
    (``oldest_wait_s``, e.g. a Prometheus quantile or CloudWatch's age); with neither, an
    empty queue's wait is 0 and a non-empty one's is unknown.
    """

    depth: int
    in_flight: int | None = None
    oldest_enqueued_at: float | None = None
    oldest_wait_s: float | None = None
    arrivals: float | None = None
    completed: float | None = None


@dataclass(slots=True)
class _Pool(Generic[S]):
    name: str
    settings: S
    arrivals: RateMeter = field(default_factory=RateMeter)
    completions: RateMeter = field(default_factory=RateMeter)
    last: Observation | None = None


class PolledSampler(ABC, Generic[S]):
    """Reads each pool with ``read`` concurrently under the tick's deadline; never raises."""

    source: str = "polled"
    """The kind's name, for logs."""

    def __init__(
        self,
        pools: Sequence[tuple[str, BaseModel]],
        clock: Clock,
        timeout_s: float,
        settings_type: type[S],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if not pools:
            raise ValueError(f"a {self.source} sampler needs at least one pool")
        if timeout_s <= 0 or concurrency < 1:
            raise ValueError("timeout_s must be > 0 and concurrency >= 1")
        checked: list[_Pool[S]] = []
        for name, settings in pools:
            if not isinstance(settings, settings_type):
                raise TypeError(f"pool {name!r}: {settings_type.__name__} expected, "
                                f"got {type(settings).__name__}")
            checked.append(_Pool(name, settings))
        self._pools = checked
        self._clock = clock
        self.timeout_s = timeout_s
        self._limit = asyncio.Semaphore(concurrency)
        self.invalid = InvalidObservations()
        """Implausible enqueue times seen; the daemon points its ``sink`` at telemetry."""
        self._failures = SampleFailures()

    @abstractmethod
    async def read(self, pool: str, settings: S) -> Reading:
        """One pool's numbers; raise ``SourceError`` (or any exception) when it cannot."""

    @abstractmethod
    def describe(self, settings: S) -> str:
        """The queue as a person names it in a log line (no secrets)."""

    async def close(self) -> None:
        """Release clients; the default has none."""

    async def prepare(self) -> None:
        """Called once per round before the reads, under the round's deadline: a source that
        can fetch several pools' values in fewer requests does it here, and ``read`` then uses
        what it fetched. A failure here is not a pool's: the reads report per pool."""

    async def sample(self) -> Mapping[str, Observation]:
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self.prepare()
        except Exception as exc:  # the reads fetch what is missing, or fail per pool
            log.debug("queue_prepare_failed", source=self.source,
                      error=str(exc) or type(exc).__name__)
        results = await asyncio.gather(*(self._read_one(p, deadline) for p in self._pools),
                                       return_exceptions=True)
        now, wall = self._clock.monotonic(), self._clock.wall()
        out: dict[str, Observation] = {}
        for pool, result in zip(self._pools, results, strict=True):
            if isinstance(result, Reading):
                out[pool.name] = self._observe(pool, result, now, wall)
                continue
            if not isinstance(result, Exception):  # CancelledError, KeyboardInterrupt: not ours
                raise result
            self._failed(pool, result)
            out[pool.name] = self._stale(pool, now)
        return out

    async def _read_one(self, pool: _Pool[S], deadline: float) -> Reading:
        async with asyncio.timeout_at(deadline), self._limit:
            return await self.read(pool.name, pool.settings)

    def _failed(self, pool: _Pool[S], exc: Exception) -> None:
        if isinstance(exc, TimeoutError):
            error = f"no answer within the sample timeout ({self.timeout_s:g} s)"
        else:
            error = str(exc) or type(exc).__name__
        self._failures.failed(pool.name, error, source=self.source, pool=pool.name,
                              queue=self.describe(pool.settings),
                              error_type=type(exc).__name__)

    def _observe(self, pool: _Pool[S], reading: Reading, now: float, wall: float) -> Observation:
        if self._failures.failing(pool.name):
            self._failures.recovered(pool.name, source=self.source, pool=pool.name,
                                     queue=self.describe(pool.settings))
        depth = max(0, reading.depth)
        wait = reading.oldest_wait_s
        if wait is not None:
            wait = max(0.0, wait)
        elif reading.oldest_enqueued_at is not None and depth:
            reason = classify_enqueue_time(reading.oldest_enqueued_at, wall)
            if reason is None:
                wait = max(0.0, wall - reading.oldest_enqueued_at)
            else:  # unknown: an implausible timestamp never drives scaling
                self.invalid.record(pool.name, reason, reading.oldest_enqueued_at)
        elif depth == 0:
            wait = 0.0  # nobody waits in an empty queue: known, not unknown
        obs = Observation(
            time=now,
            depth=depth,
            oldest_wait_s=wait,
            in_flight=None if reading.in_flight is None else max(0, reading.in_flight),
            arrival_rate=pool.arrivals.update(now, _count(reading.arrivals)),
            completion_rate=pool.completions.update(now, _count(reading.completed)),
        )
        pool.last = obs
        return obs

    def _stale(self, pool: _Pool[S], now: float) -> Observation:
        if pool.last is None:
            return Observation(time=now, depth=0, fresh=False)
        return replace(pool.last, time=now, arrival_rate=None, completion_rate=None, fresh=False)


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def require(condition: bool, message: str) -> None:
    """Raise ``SourceError(message)`` unless ``condition``: a reply not shaped as documented."""
    if not condition:
        raise SourceError(message)


def check_url(value: str, what: str, schemes: tuple[str, ...], must: str) -> str:
    """A URL with one of ``schemes``, a host and a valid port, checked at config load so a
    typo is reported with its file and line, not as a connection error on the first tick;
    the error says what the ``what`` URL ``must`` be and never echoes its password."""
    from urllib.parse import urlsplit

    safe = redact_url(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"invalid {what} URL {safe!r}: {exc}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{what} URL must {must}, got {safe!r}")
    return value


def validate_http_url(value: str, what: str) -> str:
    """An ``http://`` or ``https://`` URL (``check_url``), without a trailing slash."""
    return check_url(value, what, ("http", "https"),
                     "be http://host[:port][/path] or https://...").rstrip("/")


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value (RFC 7617), built here rather than by an HTTP client
    whose helper for it moves between versions."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its user-info, and the ``Authorization`` header that carried it (none
    when the URL has no user-info). The user and password are percent-decoded."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": basic_auth(unquote(parts.username),
                                              unquote(parts.password or ""))}


class PolledSource(Generic[S]):
    """The entry-point class of a queue kind sampled by a ``PolledSampler``: a kind names its
    ``Settings``, its ``Sampler`` and, in ``server_key``, what pools must share to share one
    sampler (a server, its credentials); the settings check and the sampler's construction
    are the same for every kind."""

    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    Sampler: ClassVar[type[Any]]
    """A ``PolledSampler`` subclass taking ``(pools, clock, timeout_s)``."""

    @classmethod
    def server_key(cls, settings: S) -> tuple[Hashable, ...]:
        raise NotImplementedError

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable:
        if not isinstance(settings, cls.Settings):
            raise TypeError(f"{cls.kind}: expected {cls.Settings.__name__}, got "
                            f"{type(settings).__name__}")
        return (cls.kind, *cls.server_key(cast(S, settings)))

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> PolledSampler[S]:
        return cast(PolledSampler[S], cls.Sampler(pools, clock, timeout_s))
