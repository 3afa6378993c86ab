"""``rabbitmq``: a RabbitMQ queue (the ``rabbitmq`` extra: aiormq, and aiohttp for the
management API).

Two ways to read it, per pool:

* **AMQP** (always available): a passive ``queue.declare`` per tick gives ready messages (the
  depth) and consumers. AMQP has no count of unacknowledged messages, so in-flight is unknown,
  and no head age; ``age: peek`` adds one: ``basic.get`` without ack, read the head message's
  ``timestamp`` property (AMQP: whole seconds; the ``timestamp_in_ms`` header of the
  ``rabbitmq_message_timestamp`` plugin is preferred when present), then ``basic.reject`` with
  requeue. It REDELIVERS THE HEAD every tick: the message goes back to the head with its
  ``redelivered`` flag set, and a quorum queue counts each peek as a delivery, so with a
  ``delivery-limit`` (RabbitMQ 4 sets 20 by default) a message waiting at the head is
  dead-lettered or dropped after that many ticks. Use ``peek`` on classic queues only. A peek on
  a connection that dies mid-way is requeued by the broker (never lost).
* **Management API** (``management_url``, the ``rabbitmq_management`` plugin): one
  ``GET /api/queues/<vhost>/<queue>`` per tick gives ``messages_ready`` (depth),
  ``messages_unacknowledged`` (in flight), ``consumers``, ``head_message_timestamp`` (the
  ``timestamp`` property of the oldest message not yet ACKNOWLEDGED, so a request in service
  counts: measured on 3.10; reported for classic queues while it is paged in, else unknown)
  and the cumulative ``message_stats.publish`` / ``ack`` counters (the rates). The plugin
  refreshes these every ``collect_statistics_interval`` (5 s by default): values may be that
  old. No message is touched.

``consumers`` is kept per pool in ``sampler.consumers`` (the core's observation has no field
for it). One AMQP connection (or HTTP session) per URL serves all the pools on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import SourceError
from autoscaler.sources.polled import PolledSampler, PolledSource, Reading, basic_auth, require
from autoscaler.sources.rabbitmq.settings import RabbitMqSettings

try:
    import aiohttp
    import aiormq
    from aiormq.abc import AbstractChannel, AbstractConnection
    from pamqp.commands import Basic
except ImportError:  # named by the registry's "failed to load" message
    raise ImportError("the rabbitmq queue kind needs aiormq and aiohttp: "
                      "pip install 'queue-autoscaler[rabbitmq]'") from None


def head_time(headers: dict[str, Any] | None, timestamp: datetime | None) -> float | None:
    """The head message's enqueue time in unix seconds: ``timestamp_in_ms`` header first
    (milliseconds), else the AMQP ``timestamp`` property (seconds); ``None`` when neither."""
    ms = (headers or {}).get("timestamp_in_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return float(ms) / 1000.0
    return timestamp.timestamp() if timestamp is not None else None


class RabbitMqSampler(PolledSampler[RabbitMqSettings]):
    """All pools of one broker URL (see the module docstring)."""

    source = "rabbitmq"

    def __init__(
        self, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> None:
        super().__init__(pools, clock, timeout_s, RabbitMqSettings)
        first = self._pools[0].settings
        self._url, self._management = first.url, first.management_url
        self._auth = {"Authorization": basic_auth(*first.credentials())}
        self._connection: AbstractConnection | None = None
        self._connecting = asyncio.Lock()
        self._channels: dict[str, AbstractChannel] = {}
        self._session: aiohttp.ClientSession | None = None
        self.consumers: dict[str, int] = {}
        """Consumers of each pool's queue at its last good read."""

    def describe(self, settings: RabbitMqSettings) -> str:
        return settings.describe()

    async def read(self, pool: str, settings: RabbitMqSettings) -> Reading:
        if settings.management_url is not None:
            return await self._read_management(pool, settings)
        return await self._read_amqp(pool, settings)

    # ------------------------------------------------------------------ AMQP

    async def _channel(self, pool: str) -> AbstractChannel:
        """The pool's own channel: a passive declare of a missing queue closes the channel
        it ran on, which must not break the other pools' reads."""
        channel = self._channels.get(pool)
        if channel is not None and not channel.is_closed:
            return channel
        async with self._connecting:
            if self._connection is None or self._connection.is_closed:
                self._channels.clear()
                self._connection = await aiormq.connect(self._url)
        channel = self._channels[pool] = await self._connection.channel()
        return channel

    async def _read_amqp(self, pool: str, settings: RabbitMqSettings) -> Reading:
        try:
            channel = await self._channel(pool)
            declared = await channel.queue_declare(settings.queue, passive=True)
            depth = declared.message_count or 0
            self.consumers[pool] = declared.consumer_count or 0
            oldest = None
            if depth and settings.age == "peek":
                oldest = await self._peek(channel, settings.queue)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise SourceError(f"queue {settings.queue!r} not found in vhost "
                              f"{settings.vhost!r}") from exc
        except aiormq.exceptions.AMQPError as exc:
            raise SourceError(f"AMQP: {type(exc).__name__}: {exc}") from exc
        return Reading(depth=depth, oldest_enqueued_at=oldest)

    async def _peek(self, channel: AbstractChannel, queue: str) -> float | None:
        """The head's enqueue time by ``basic.get`` then ``basic.reject(requeue)``: see the
        module docstring for what that costs."""
        message = await channel.basic_get(queue, no_ack=False)
        if not isinstance(message.delivery, Basic.GetOk):
            return None  # emptied since the declare
        tag = message.delivery.delivery_tag
        require(tag is not None, "basic.get-ok without a delivery tag")
        try:
            properties = message.header.properties
            return head_time(properties.headers, properties.timestamp)
        finally:
            await channel.basic_reject(int(tag or 0), requeue=True)

    # ------------------------------------------------------------ management API

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._auth, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def _read_management(self, pool: str, settings: RabbitMqSettings) -> Reading:
        url = (f"{settings.management_base()}/api/queues/{quote(settings.vhost, safe='')}/"
               f"{quote(settings.queue, safe='')}")
        try:
            async with self._client().get(url) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    raise SourceError(f"management API: HTTP {resp.status}, the answer is not "
                                      "JSON (is management_url the plugin's port?)") from None
                if resp.status != 200:
                    reason = body.get("reason") if isinstance(body, dict) else None
                    raise SourceError(f"management API: HTTP {resp.status}: {reason or body}")
        except aiohttp.ClientError as exc:
            raise SourceError(f"management API: {type(exc).__name__}: {exc}") from exc
        require(isinstance(body, dict), "management API: the queue is not a JSON object")
        ready, unacked = body.get("messages_ready"), body.get("messages_unacknowledged")
        require(isinstance(ready, int), "management API: no messages_ready yet (the plugin "
                                        "has not collected this queue's statistics)")
        self.consumers[pool] = int(body.get("consumers") or 0)
        head = body.get("head_message_timestamp")
        stats = body.get("message_stats") or {}
        age = settings.age
        return Reading(
            depth=int(ready),
            in_flight=int(unacked) if isinstance(unacked, int) else None,
            oldest_enqueued_at=float(head) if age != "none" and isinstance(
                head, int | float) and not isinstance(head, bool) else None,
            arrivals=_counter(stats.get("publish")),
            completed=_counter(stats.get("ack")),
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channels.clear()
        if connection is not None and not connection.is_closed:
            await connection.close()
        if self._session is not None:
            await self._session.close()


def _counter(value: Any) -> float | None:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else None


class RabbitMqSource(PolledSource[RabbitMqSettings]):
    kind: ClassVar[str] = "rabbitmq"
    Settings: ClassVar[type[BaseModel]] = RabbitMqSettings
    Sampler: ClassVar[type[Any]] = RabbitMqSampler

    @classmethod
    def server_key(cls, settings: RabbitMqSettings) -> tuple[Hashable, ...]:
        """Pools on one AMQP URL (one vhost) and management URL share the connection."""
        return (settings.url, settings.management_url)


__all__ = ["RabbitMqSampler", "RabbitMqSettings", "RabbitMqSource", "head_time"]
