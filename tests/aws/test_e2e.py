"""End to end: a real Redis list queue, the daemon (in this process, so the test can install its
stockout hook on the daemon's own aiobotocore client), two moto ASGs (spot and on-demand) and
the state store on the same redis-server.

Requests are pushed with the producer convention (``LPUSH`` + ``INCR :enqueued``) and served
by popping them (``RPOP`` + ``INCR :completed``), standing in for ``autoscaler worker``: moto's
instances run no code, so what serves the queue is the test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.registry import Registry
from tests.aws.support import MotoCloud
from tests.aws.test_daemon import started

KEY = "aws-e2e:chat"
CONFIG = """
controller:
  interval: 1s
  state_store: {{url: "{redis}", prefix: "aws-e2e:state:"}}
providers:
  aws-prod: {{kind: aws, region: us-east-1, endpoint_url: "{url}"}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{redis}", key: "{key}"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 30}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: aws-prod, market: spot, hourly_price: 1.2, asg: chat-spot}}
      - {{name: od, provider: aws-prod, market: on-demand, hourly_price: 4.0, asg: chat-od}}
"""


async def push(client: Any, n: int, age_s: float) -> None:
    for _ in range(n):
        payload = json.dumps({"id": str(uuid.uuid4()), "enqueued_at": time.time() - age_s,
                              "service_s": 1.0})
        await client.lpush(KEY, payload)
        await client.incr(KEY + ":enqueued")


async def serve_all(client: Any) -> int:
    served = 0
    while await client.rpop(KEY) is not None:
        await client.incr(KEY + ":completed")
        served += 1
    return served


def sizes(cloud: MotoCloud) -> dict[str, tuple[int, int]]:
    return {g: (cloud.desired(f"chat-{g}"), cloud.instances(f"chat-{g}")) for g in ("spot", "od")}


async def test_backlog_spot_first_stockout_on_demand_restart_cuts_nothing(
    registries: dict[str, Registry[Any]], cloud: MotoCloud, redis_url: str
) -> None:
    cloud.create("chat-spot", "chat-od")
    config: Config = parse_config(CONFIG.format(redis=redis_url, url=cloud.url, key=KEY),
                                  "aws-e2e.yaml", registries=registries)
    queue = aioredis.Redis.from_url(redis_url)

    # A backlog grows spot first.
    await push(queue, 4, age_s=5.0)
    daemon = await started(config, registries, cloud)
    [tick] = await daemon.loop.tick()
    await daemon.loop.settle()
    assert tick.decision is not None and tick.decision.targets["od"] == 0
    spot_first = tick.decision.targets["spot"]
    assert spot_first > 0 and sizes(cloud) == {"spot": (spot_first, spot_first), "od": (0, 0)}

    # More backlog while spot is stocked out: AWS accepts the larger size and stays short;
    # the next tick sees the failed launches and grows on-demand.
    cloud.stock_out("chat-spot")
    await push(queue, 8, age_s=5.0)
    await asyncio.sleep(1.0)
    [grow] = await daemon.loop.tick()
    await daemon.loop.settle()
    assert grow.decision is not None and grow.decision.targets["spot"] > spot_first
    assert cloud.instances("chat-spot") == spot_first  # nothing launched
    [fallback] = await daemon.loop.tick()
    await daemon.loop.settle()
    assert fallback.fleet is not None and fallback.decision is not None
    spot_state = fallback.fleet.group("spot")
    assert spot_state is not None and not spot_state.available
    assert fallback.decision.targets["od"] > 0
    assert fallback.decision.targets["spot"] == spot_first  # what it holds: none cut
    od_now = fallback.decision.targets["od"]
    assert sizes(cloud) == {"spot": (spot_first, spot_first), "od": (od_now, od_now)}
    before = sizes(cloud)
    await daemon.close(1.0)

    # The queue is served; a restarted daemon resumes its state and cuts no running ASG.
    assert await serve_all(queue) == 12
    with capture_logs() as logs:
        restarted = await started(config, registries, cloud)
        for _ in range(3):
            await restarted.loop.tick()
            await restarted.loop.settle()
            await asyncio.sleep(0.5)
    assert [e["pool"] for e in logs if e["event"] == "state_resumed"] == ["chat"]
    after = sizes(cloud)
    for group in ("spot", "od"):
        assert after[group][0] >= before[group][0] and after[group][1] >= before[group][1], (
            group, before, after)
    await restarted.close(1.0)
    await queue.aclose()
