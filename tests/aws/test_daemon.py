"""The daemon on two moto Auto Scaling groups (spot and on-demand), through aiobotocore.

Ticks are driven one at a time on the loop's real clock; the memory queue gives the backlog
(the end-to-end test with a Redis queue is ``test_e2e.py``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.ports.provider import GroupId
from autoscaler.providers.aws.client import AwsClient
from autoscaler.registry import Registry
from autoscaler.runtime.actuator import RetryPolicy
from autoscaler.runtime.app import Daemon
from autoscaler.sources.memory import reset_queue
from tests.aws.support import MotoCloud

CONFIG = """
controller: {{interval: 1s}}
providers:
  aws-prod: {{kind: aws, region: us-east-1, endpoint_url: "{url}"}}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: aws-prod, market: spot, hourly_price: 1.2, asg: chat-spot}}
      - {{name: od, provider: aws-prod, market: on-demand, hourly_price: 4.0, asg: chat-od}}
"""
SPOT, OD = GroupId("chat", "spot"), GroupId("chat", "od")


def config(registries: dict[str, Registry[Any]], cloud: MotoCloud, queue: str) -> Config:
    return parse_config(CONFIG.format(url=cloud.url, queue=queue), "aws.yaml",
                        registries=registries)


def backlog(queue: str, n: int) -> None:
    q = reset_queue(queue)
    for _ in range(n):
        q.put(time.time() - 5.0, 1.0)


async def started(config: Config, registries: dict[str, Registry[Any]],
                  cloud: MotoCloud) -> Daemon:
    daemon = Daemon.build(config, registries=registries)
    await daemon.start()
    client = daemon.accounts["aws-prod"].client
    assert isinstance(client, AwsClient) and client.sdk is not None
    cloud.install(client.sdk)
    return daemon


async def test_a_tick_sets_the_spot_asgs_desired_capacity(
    registries: dict[str, Registry[Any]], cloud: MotoCloud
) -> None:
    cloud.create("chat-spot", "chat-od")
    backlog("aws-tick", 4)
    daemon = await started(config(registries, cloud, "aws-tick"), registries, cloud)
    [tick] = await daemon.loop.tick()
    await daemon.loop.settle()
    assert tick.decision is not None and dict(tick.decision.targets) == {"spot": 4, "od": 0}
    assert (cloud.desired("chat-spot"), cloud.instances("chat-spot")) == (4, 4)
    assert cloud.desired("chat-od") == 0
    assert cloud.sent["SetDesiredCapacity"] == 1  # od already had 0: no call for it
    [again] = await daemon.loop.tick()
    assert again.fleet is not None
    assert again.fleet.group("spot") == again.fleet.groups[0] and again.fleet.groups[0].running == 4
    await daemon.close(1.0)


async def test_a_spot_stockout_puts_the_shortfall_on_demand_within_one_tick(
    registries: dict[str, Registry[Any]], cloud: MotoCloud
) -> None:
    cloud.create("chat-spot", "chat-od")
    cloud.stock_out("chat-spot")
    backlog("aws-stockout", 4)
    daemon = await started(config(registries, cloud, "aws-stockout"), registries, cloud)
    with capture_logs() as logs:
        [first] = await daemon.loop.tick()
        await daemon.loop.settle()
        assert first.decision is not None and dict(first.decision.targets) == {"spot": 4, "od": 0}
        assert (cloud.desired("chat-spot"), cloud.instances("chat-spot")) == (4, 0)  # accepted
        [second] = await daemon.loop.tick()  # the next tick sees the failed launches
        await daemon.loop.settle()
    assert second.fleet is not None
    spot = second.fleet.group("spot")
    assert spot is not None and not spot.available and "no Spot capacity" in spot.reason
    assert second.decision is not None and dict(second.decision.targets) == {"spot": 0, "od": 4}
    assert (cloud.desired("chat-od"), cloud.instances("chat-od")) == (4, 4)
    assert cloud.desired("chat-spot") == 0  # the shortfall withdrawn from spot
    [event] = [e for e in logs if e["event"] == "group_unavailable"]
    assert event["group"] == "chat/spot" and "InsufficientInstanceCapacity" in event["error"]
    await daemon.close(1.0)


async def test_a_throttling_burst_is_retried_with_backoff_and_acts_once(
    registries: dict[str, Registry[Any]], cloud: MotoCloud
) -> None:
    """Four throttled answers: botocore makes three attempts inside the call, the actuator backs
    off and calls again, botocore retries once more, then the one SetDesiredCapacity lands."""
    cloud.create("chat-spot", "chat-od")
    backlog("aws-throttle", 4)
    daemon = await started(config(registries, cloud, "aws-throttle"), registries, cloud)
    daemon.loop.retry = RetryPolicy(base_s=0.2, cap_s=1.0)
    cloud.throttle("SetDesiredCapacity", 4)
    with capture_logs() as logs:
        await daemon.loop.tick()
        await daemon.loop.settle()
        for _ in range(3):  # later ticks resubmit the same target: still one change
            await daemon.loop.tick()
            await daemon.loop.settle()
    assert cloud.throttled["SetDesiredCapacity"] == 4
    assert cloud.sent["SetDesiredCapacity"] == 1
    assert (cloud.desired("chat-spot"), cloud.instances("chat-spot")) == (4, 4)
    failed = [e for e in logs if e["event"] == "resize_failed"]
    assert [e["error_class"] for e in failed] == ["throttled"] and failed[0]["retry_in_s"] > 0
    await daemon.close(1.0)


async def test_stockout_and_return_moves_capacity_back_without_a_dip(
    registries: dict[str, Registry[Any]], cloud: MotoCloud
) -> None:
    """Spot is short, on-demand takes the load; spot returns: capacity moves back to spot and
    the instances in service never drop below the 4 the queue needs."""
    cloud.create("chat-spot", "chat-od")
    cloud.stock_out("chat-spot")
    backlog("aws-return", 4)
    daemon = await started(config(registries, cloud, "aws-return"), registries, cloud)
    daemon.loop.unavailability.first_s = daemon.loop.unavailability.cap_s = 1.0
    for _ in range(2):
        await daemon.loop.tick()
        await daemon.loop.settle()
    assert (cloud.instances("chat-spot"), cloud.instances("chat-od")) == (0, 4)
    cloud.restock("chat-spot")
    in_service = []
    for _ in range(8):
        await asyncio.sleep(0.6)  # past the spot group's (shortened) unavailability hold
        await daemon.loop.tick()
        await daemon.loop.settle()
        in_service.append((cloud.instances("chat-spot"), cloud.instances("chat-od")))
        if in_service[-1] == (4, 0):
            break
    assert in_service[-1] == (4, 0), in_service
    assert all(spot + od >= 4 for spot, od in in_service), in_service
    await daemon.close(1.0)
