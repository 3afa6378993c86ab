"""``sqs``: an Amazon SQS queue, read with aiobotocore (the ``sqs`` extra).

Every tick, per pool, one ``GetQueueAttributes``: depth = ``ApproximateNumberOfMessages``
(visible: waiting), in-flight = ``ApproximateNumberOfMessagesNotVisible`` (received, not yet
deleted). Delayed messages (``ApproximateNumberOfMessagesDelayed``) are not waiting yet and are
not counted. SQS's counts are approximate and eventually consistent (AWS: about a minute).

SQS has no attribute for the age of the oldest message; ``age`` says how it is measured:

* ``cloudwatch`` (default): CloudWatch's ``AWS/SQS ApproximateAgeOfOldestMessage`` (statistic
  Maximum, 1-minute period, newest datapoint of the last 15 minutes) through
  ``GetMetricData``, re-read at most every ``age_refresh`` (default 60 s; SQS publishes it once
  a minute, so reading it every tick would only add cost). It lags the queue by one to a few
  minutes, and is unknown when CloudWatch has no recent datapoint.
* ``peek``: ``ReceiveMessage`` with ``VisibilityTimeout=0`` (up to 10 messages, no long
  poll) reading each message's ``SentTimestamp``; the wait is that of the oldest one returned.
  Current to the second, but it COSTS A RECEIVE: each peeked message's
  ``ApproximateReceiveCount`` grows by one per tick, so with a redrive policy the peeks count
  toward ``maxReceiveCount`` and can move messages to the dead-letter queue (the sampler logs
  ``sqs_peek_with_redrive`` once when the queue has one); it is a billed request per tick; and a
  standard queue returns a sample of its messages, not necessarily the oldest, so the age read
  is a lower bound. Use it on queues without a redrive policy, or with a high
  ``maxReceiveCount``.
* ``none``: the wait is unknown whenever the queue is not empty (policies fall back to depth).

An empty queue's wait is 0 in every mode. One client (SQS, and CloudWatch when used) per region,
endpoint and profile serves all the pools on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import SourceError
from autoscaler.sources.polled import (
    DEFAULT_CONCURRENCY,
    PolledSampler,
    PolledSource,
    Reading,
    require,
)
from autoscaler.sources.sqs.settings import SqsSettings

log = structlog.get_logger(__name__)

COUNT_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
PEEK_MAX = 10
"""The most messages one ReceiveMessage returns (an SQS limit)."""
AGE_LOOKBACK = timedelta(minutes=15)


def _sdk() -> tuple[Any, Any]:
    try:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session
    except ImportError:
        raise SourceError("the sqs queue kind needs aiobotocore: "
                          "pip install 'queue-autoscaler[sqs]'") from None
    return AioConfig, get_session


class SqsSampler(PolledSampler[SqsSettings]):
    """All pools of one region, endpoint and profile (see the module docstring)."""

    source = "sqs"

    def __init__(
        self, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> None:
        super().__init__(pools, clock, timeout_s, SqsSettings)
        first = self._pools[0].settings
        self._region, self._endpoint, self._profile = (
            first.region, first.endpoint_url, first.profile)
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._starting = asyncio.Lock()
        self._ages: dict[str, tuple[float, float | None]] = {}
        """queue URL → (monotonic time read, CloudWatch age or None)."""
        self._redrive_warned: set[str] = set()
        self.requests: dict[str, int] = {}
        """API calls made, by operation: what a tick costs."""

    def describe(self, settings: SqsSettings) -> str:
        return settings.queue_url

    async def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is not None:
            return client
        async with self._starting:
            if service not in self._clients:
                aio_config, get_session = _sdk()
                session = get_session()
                if self._profile:
                    session.set_config_variable("profile", self._profile)
                config = aio_config(
                    retries={"mode": "standard", "total_max_attempts": 2},
                    connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                    max_pool_connections=DEFAULT_CONCURRENCY,
                )
                self._clients[service] = await self._stack.enter_async_context(
                    session.create_client(service, region_name=self._region,
                                          endpoint_url=self._endpoint, config=config))
            return self._clients[service]

    async def _call(self, service: str, operation: str, **kwargs: Any) -> Any:
        """One API call; botocore's errors become ``SourceError`` with AWS's code."""
        client = await self._client(service)
        self.requests[operation] = self.requests.get(operation, 0) + 1
        try:
            return await getattr(client, operation)(**kwargs)
        except Exception as exc:
            error = getattr(exc, "response", {}).get("Error", {})
            if error:
                raise SourceError(f"{operation}: {error.get('Code', '?')}: "
                                  f"{error.get('Message', '')}") from exc
            raise

    async def read(self, pool: str, settings: SqsSettings) -> Reading:
        names = list(COUNT_ATTRIBUTES)
        if settings.age == "peek" and settings.queue_url not in self._redrive_warned:
            names.append("RedrivePolicy")
        reply = await self._call("sqs", "get_queue_attributes",
                                 QueueUrl=settings.queue_url, AttributeNames=names)
        attributes = reply.get("Attributes", {})
        try:
            depth = int(attributes["ApproximateNumberOfMessages"])
            in_flight = int(attributes["ApproximateNumberOfMessagesNotVisible"])
        except (KeyError, ValueError):
            raise SourceError(f"GetQueueAttributes answered without the counts: "
                              f"{sorted(attributes)}") from None
        if settings.age == "peek" and settings.queue_url not in self._redrive_warned:
            self._redrive_warned.add(settings.queue_url)
            if "RedrivePolicy" in attributes:
                log.warning("sqs_peek_with_redrive", pool=pool, queue=settings.queue_url,
                            redrive_policy=attributes["RedrivePolicy"],
                            effect="each peek counts toward maxReceiveCount")
        if depth == 0 or settings.age == "none":
            return Reading(depth=depth, in_flight=in_flight)
        if settings.age == "peek":
            return Reading(depth=depth, in_flight=in_flight,
                           oldest_enqueued_at=await self._peek(settings))
        return Reading(depth=depth, in_flight=in_flight,
                       oldest_wait_s=await self._cloudwatch_age(settings))

    async def _peek(self, settings: SqsSettings) -> float | None:
        """The earliest ``SentTimestamp`` (ms) among up to 10 messages received and left
        visible at once; ``None`` when the receive returned none (counts lag, or all of them
        are in flight)."""
        reply = await self._call(
            "sqs", "receive_message", QueueUrl=settings.queue_url,
            MaxNumberOfMessages=PEEK_MAX, VisibilityTimeout=0, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["SentTimestamp"],
        )
        sent: list[float] = []
        for message in reply.get("Messages", []):
            value = message.get("Attributes", {}).get("SentTimestamp")
            require(value is not None and str(value).isdigit(),
                    f"ReceiveMessage: a message has no SentTimestamp ({value!r})")
            sent.append(int(value) / 1000.0)
        return min(sent) if sent else None

    async def _cloudwatch_age(self, settings: SqsSettings) -> float | None:
        now = self._clock.monotonic()
        cached = self._ages.get(settings.queue_url)
        if cached is not None and now - cached[0] < settings.age_refresh:
            return cached[1]
        # A minute ahead: CloudWatch (and moto) compare at whole seconds, and the newest
        # datapoint may be stamped within the current second.
        end = datetime.now(UTC) + timedelta(minutes=1)
        reply = await self._call(
            "cloudwatch", "get_metric_data",
            MetricDataQueries=[{
                "Id": "age",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": settings.queue_name}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
                "ReturnData": True,
            }],
            StartTime=end - AGE_LOOKBACK, EndTime=end, ScanBy="TimestampDescending",
        )
        results = reply.get("MetricDataResults", [])
        values = results[0].get("Values", []) if results else []
        age = float(values[0]) if values else None
        self._ages[settings.queue_url] = (now, age)
        return age

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


class SqsSource(PolledSource[SqsSettings]):
    kind: ClassVar[str] = "sqs"
    Settings: ClassVar[type[BaseModel]] = SqsSettings
    Sampler: ClassVar[type[Any]] = SqsSampler

    @classmethod
    def server_key(cls, settings: SqsSettings) -> tuple[Hashable, ...]:
        """Pools reached through one region, endpoint and profile share the clients."""
        return (settings.region, settings.endpoint_url, settings.profile)


__all__ = ["SqsSampler", "SqsSettings", "SqsSource"]
