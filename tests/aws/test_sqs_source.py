"""The ``sqs`` source on aiobotocore against moto's server (SQS and CloudWatch on the wire)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.clock import LoopClock
from autoscaler.sources.sqs import SqsSource
from autoscaler.sources.sqs.settings import SqsSettings
from tests.aws.support import REGION

pytestmark = pytest.mark.usefixtures("aws_env")


def sqs(moto_url: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto_url)


def new_queue(moto_url: str, **attributes: str) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    url: str = sqs(moto_url).create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url


def settings(moto_url: str, queue_url: str, **extra: Any) -> SqsSettings:
    return SqsSettings(queue_url=queue_url, region=REGION, endpoint_url=moto_url, **extra)


async def test_peek_reads_visible_in_flight_and_the_oldest_sent_timestamp(moto_url: str) -> None:
    queue_url = new_queue(moto_url)
    client = sqs(moto_url)
    for i in range(5):
        client.send_message(QueueUrl=queue_url, MessageBody=f"req-{i}")
    taken = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=2,
                                   VisibilityTimeout=300)["Messages"]
    assert len(taken) == 2
    time.sleep(1.1)  # SentTimestamp has millisecond resolution: make the age measurable
    sampler = SqsSource.make_sampler(
        [("chat", settings(moto_url, queue_url, age="peek"))], LoopClock(), 5.0)
    try:
        obs = (await sampler.sample())["chat"]
        again = (await sampler.sample())["chat"]
    finally:
        await sampler.close()
    assert obs.fresh and (obs.depth, obs.in_flight) == (3, 2)
    assert obs.oldest_wait_s is not None and 1.0 <= obs.oldest_wait_s < 60
    assert again.depth == 3  # VisibilityTimeout=0: the peeked messages stay visible
    assert sampler.requests == {"get_queue_attributes": 2, "receive_message": 2}


async def test_peek_warns_once_about_a_redrive_policy(moto_url: str) -> None:
    dead = new_queue(moto_url)
    dead_arn = sqs(moto_url).get_queue_attributes(
        QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = new_queue(moto_url, RedrivePolicy=(
        f'{{"deadLetterTargetArn": "{dead_arn}", "maxReceiveCount": "5"}}'))
    sqs(moto_url).send_message(QueueUrl=queue_url, MessageBody="x")
    sampler = SqsSource.make_sampler(
        [("p", settings(moto_url, queue_url, age="peek"))], LoopClock(), 5.0)
    try:
        with capture_logs() as logs:
            await sampler.sample()
            await sampler.sample()
    finally:
        await sampler.close()
    warned = [e for e in logs if e["event"] == "sqs_peek_with_redrive"]
    assert len(warned) == 1 and warned[0]["queue"] == queue_url


async def test_cloudwatch_age_is_read_and_cached_for_age_refresh(moto_url: str) -> None:
    queue_url = new_queue(moto_url)
    sqs(moto_url).send_message(QueueUrl=queue_url, MessageBody="x")
    name = queue_url.rsplit("/", 1)[1]
    # What SQS publishes every minute; moto does not, so the test puts the datapoint.
    boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_url).put_metric_data(
        Namespace="AWS/SQS", MetricData=[{
            "MetricName": "ApproximateAgeOfOldestMessage", "Value": 42.0, "Unit": "Seconds",
            "Dimensions": [{"Name": "QueueName", "Value": name}],
            "Timestamp": datetime.now(UTC)}])
    clock = ManualClock()
    sampler = SqsSource.make_sampler(
        [("p", settings(moto_url, queue_url, age_refresh="60s"))], clock, 5.0)
    try:
        first = (await sampler.sample())["p"]
        clock.advance(30)
        cached = (await sampler.sample())["p"]
        clock.advance(31)
        await sampler.sample()
    finally:
        await sampler.close()
    assert first.fresh and first.depth == 1 and first.oldest_wait_s == 42.0
    assert cached.oldest_wait_s == 42.0
    assert sampler.requests["get_metric_data"] == 2  # at 0 s and 61 s, not at 30 s
    assert sampler.requests["get_queue_attributes"] == 3


async def test_no_datapoint_is_unknown_and_empty_queue_waits_zero(moto_url: str) -> None:
    busy, idle = new_queue(moto_url), new_queue(moto_url)
    sqs(moto_url).send_message(QueueUrl=busy, MessageBody="x")
    pools = [("busy", settings(moto_url, busy)), ("idle", settings(moto_url, idle)),
             ("none", settings(moto_url, busy.replace(busy.rsplit("/", 1)[1], "other"),
                               age="none"))]
    sampler = SqsSource.make_sampler(pools, ManualClock(), 5.0)
    try:
        obs = await sampler.sample()
    finally:
        await sampler.close()
    assert obs["busy"].fresh and obs["busy"].depth == 1 and obs["busy"].oldest_wait_s is None
    assert obs["idle"].fresh and obs["idle"].oldest_wait_s == 0.0
    assert sampler.requests.get("receive_message", 0) == 0
    assert not obs["none"].fresh  # that queue does not exist


async def test_a_missing_queue_is_stale_naming_pool_queue_and_aws_error(moto_url: str) -> None:
    queue_url = new_queue(moto_url)
    sqs(moto_url).send_message(QueueUrl=queue_url, MessageBody="x")
    sampler = SqsSource.make_sampler(
        [("p", settings(moto_url, queue_url, age="none"))], ManualClock(), 5.0)
    try:
        ok = (await sampler.sample())["p"]
        sqs(moto_url).delete_queue(QueueUrl=queue_url)
        with capture_logs() as logs:
            stale = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert ok.fresh and ok.depth == 1 and ok.oldest_wait_s is None  # age: none
    assert not stale.fresh and stale.depth == 1
    [failed] = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert failed["pool"] == "p" and failed["queue"] == queue_url and failed["source"] == "sqs"
    assert "get_queue_attributes" in failed["error"] and "NonExistentQueue" in failed["error"]


async def test_an_unreachable_endpoint_is_stale_within_the_timeout() -> None:
    s = SqsSettings(queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/q",
                    endpoint_url="http://127.0.0.1:9")
    sampler = SqsSource.make_sampler([("p", s)], ManualClock(), 0.5)
    try:
        started = time.monotonic()
        obs = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert not obs.fresh and obs.depth == 0
    assert time.monotonic() - started < 3.0


CONFIG = """
pools:
  - name: chat
    queue:
      kind: sqs
      queue_url: {url}
{extra}
    sla: {{max_wait: 10s}}
    capacity: {{max: 2}}
    groups: [{{name: g, provider: local, command: ["true"]}}]
"""


def test_config(registries: dict[str, Registry[Any]]) -> None:
    config = parse_config(CONFIG.format(
        url="https://sqs.eu-west-1.amazonaws.com/123456789012/requests", extra=""),
        registries=registries)
    queue = config.pools[0].queue.settings
    assert isinstance(queue, SqsSettings)
    assert (queue.region, queue.queue_name, queue.age) == ("eu-west-1", "requests", "cloudwatch")


@pytest.mark.parametrize(("url", "extra", "line", "message"), [
    ("https://sqs.us-east-1.amazonaws.com/requests", "", 6, "/<account id>/<queue name>"),
    ("http://localhost:4566/000000000000/q", "", 5, "region: required"),
    ("https://sqs.us-east-1.amazonaws.com/1/q", "      age: sometimes", 7, "age"),
    ("https://sqs.us-east-1.amazonaws.com/1/q", "      age_refresh: 0.1s", 7, "age_refresh"),
    ("https://u:pw@sqs.us-east-1.amazonaws.com/1/q", "", 6, "credentials"),
])
def test_config_errors_name_file_and_line(
    registries: dict[str, Registry[Any]], url: str, extra: str, line: int, message: str,
) -> None:
    with pytest.raises(ConfigFileError) as raised:
        parse_config(CONFIG.format(url=url, extra=extra), "s.yaml", registries=registries)
    assert f"s.yaml:{line}:" in str(raised.value) and message in str(raised.value), raised.value


def test_a_missing_sdk_is_a_config_error_naming_the_extra(
    registries: dict[str, Registry[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import autoscaler.sources.sqs.settings as sqs_settings

    monkeypatch.setattr(sqs_settings, "find_spec", lambda _name: None)  # as if not installed
    text = CONFIG.format(url="https://sqs.us-east-1.amazonaws.com/1/q", extra="")
    with pytest.raises(ConfigFileError, match=r"s.yaml:5: .*queue-autoscaler\[sqs\]"):
        parse_config(text, "s.yaml", registries=registries)
