"""``nats-jetstream``: a durable JetStream consumer, read with nats-py (the ``nats`` extra).

Every tick, per pool, one ``CONSUMER.INFO``: waiting = ``num_pending`` (messages matching the
consumer's filter not yet delivered), in flight = ``num_ack_pending`` (delivered, not yet
acknowledged). When something waits, the oldest waiting message is the first one after the
consumer's ``delivered.stream_seq`` that matches its filter: one message get by
``{seq, next_by_subj}`` reads it and its stored time (the time the server accepted it; each
filter subject of a multi-filter consumer is asked, the earliest wins). The get is a
``DIRECT.GET`` (answered by any replica) when the stream allows direct gets, else the
``STREAM.MSG.GET`` API; which one is learnt from the stream's configuration on the pool's first
read. The wait is the server's clock against ours: keep them in NTP sync. Rates are unknown
(a consumer has no completion counter; the stream's sequence counts every subject).

One connection per server URL (and credentials) serves all its pools; nats-py reconnects in
the background, and a failed connect is retried on the next tick (the pools are stale meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import SourceError
from autoscaler.sources.nats.settings import NatsSettings
from autoscaler.sources.polled import PolledSampler, PolledSource, Reading

try:
    import nats
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError
except ImportError:  # named by the registry's "failed to load" message
    raise ImportError("the nats-jetstream queue kind needs nats-py: "
                      "pip install 'queue-autoscaler[nats]'") from None

log = structlog.get_logger(__name__)


class NatsSampler(PolledSampler[NatsSettings]):
    """All pools of one NATS server (see the module docstring)."""

    source = "nats-jetstream"

    def __init__(
        self, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> None:
        super().__init__(pools, clock, timeout_s, NatsSettings)
        first = self._pools[0].settings
        self._url, self._credentials = first.url, first.credentials
        self._nc: Any = None
        self._connecting = asyncio.Lock()
        self._direct: dict[str, bool] = {}
        """stream → whether it allows direct gets (read once per stream)."""

    def describe(self, settings: NatsSettings) -> str:
        return settings.describe()

    async def _connection(self) -> Any:
        if self._nc is not None and not self._nc.is_closed:
            return self._nc
        async with self._connecting:
            if self._nc is None or self._nc.is_closed:
                self._nc = await nats.connect(
                    self._url, name="queue-autoscaler", connect_timeout=max(1, round(
                        self.timeout_s)), allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=1, error_cb=self._error, user_credentials=(
                        str(self._credentials) if self._credentials else None),
                )
            return self._nc

    async def _error(self, exc: Exception) -> None:
        """nats-py's background errors (a lost connection, reconnects): the failed samples
        already say so, per pool."""
        log.debug("nats_client_error", error=str(exc) or type(exc).__name__)

    async def read(self, pool: str, settings: NatsSettings) -> Reading:
        nc = await self._connection()
        prefix = f"$JS.{settings.domain}.API" if settings.domain else "$JS.API"
        jsm = nc.jsm(prefix=prefix, timeout=self.timeout_s)
        try:
            info = await jsm.consumer_info(settings.stream, settings.consumer)
        except NotFoundError as exc:
            raise SourceError(f"stream or consumer not found: {exc.description or exc}") from exc
        except NatsError as exc:
            raise SourceError(f"consumer info: {type(exc).__name__}: {exc}") from exc
        depth, in_flight = info.num_pending, info.num_ack_pending
        if depth is None:
            raise SourceError("consumer info has no num_pending (a push consumer without "
                              "durable state?)")
        if depth == 0:
            return Reading(depth=0, in_flight=in_flight)
        delivered = info.delivered.stream_seq if info.delivered else 0
        config = info.config
        filters = list(config.filter_subjects or []) or (
            [config.filter_subject] if config.filter_subject else [">"])
        oldest = await self._oldest(jsm, settings.stream, delivered + 1, filters)
        return Reading(depth=depth, in_flight=in_flight, oldest_enqueued_at=oldest)

    async def _oldest(self, jsm: Any, stream: str, seq: int, filters: list[str]) -> float | None:
        """The stored time (unix s) of the first message at or after ``seq`` matching any of
        ``filters``; ``None`` when none is left (acknowledged or purged since the info)."""
        direct = self._direct.get(stream)
        if direct is None:
            info = await jsm.stream_info(stream)
            direct = self._direct[stream] = bool(info.config.allow_direct)
        times: list[float] = []
        for subject in filters:
            try:
                msg = await jsm.get_msg(stream, seq=seq, subject=subject, next=True,
                                        direct=direct)
            except NotFoundError:
                continue
            except NatsError as exc:
                raise SourceError(f"message get at seq {seq}: {type(exc).__name__}: "
                                  f"{exc}") from exc
            if msg.time is not None:
                times.append(msg.time.timestamp())
        return min(times) if times else None

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()


class NatsJetStreamSource(PolledSource[NatsSettings]):
    kind: ClassVar[str] = "nats-jetstream"
    Settings: ClassVar[type[BaseModel]] = NatsSettings
    Sampler: ClassVar[type[Any]] = NatsSampler

    @classmethod
    def server_key(cls, settings: NatsSettings) -> tuple[Hashable, ...]:
        """Pools on one server (and credentials) share one connection."""
        return (settings.url, settings.credentials)


__all__ = ["NatsJetStreamSource", "NatsSampler", "NatsSettings"]
