"""End to end: a real Redis list queue, the daemon (in this process, so the test can install its
stockout hook on the daemon's own aiobotocore client), two moto ASGs (spot and on-demand) and
the state store on the same redis-server.

Requests are pushed with the producer convention (``LPUSH`` + ``INCR :enqueued``) and served
by a real ``autoscaler worker`` process with one slot per instance the ASGs run: moto's
instances run no code, so the worker stands in for them, serving each request for its
``service_s`` and counting it in ``:completed`` as a deployed worker would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
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


AUTOSCALER = Path(sys.executable).parent / "autoscaler"
DEADLINE_S = 60.0
"""How long the workers may take to drain the queue: generous, never a timed assertion."""


async def serve_with_workers(client: Any, redis_url: str, slots: int, log_path: Path) -> int:
    """Run ``autoscaler worker`` with ``slots`` slots until the queue is drained and every
    request is counted completed; stop it with SIGTERM (it finishes what it holds) and return
    the completions it added."""
    before = int(await client.get(KEY + ":completed") or 0)
    waiting = await client.llen(KEY)
    env = {**os.environ, "AUTOSCALER_QUEUE_URL": redis_url}
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            str(AUTOSCALER), "worker", "--kind", "redis-list", "--key", KEY,
            "--slots", str(slots), "--block", "0.1", "--heartbeat", "5",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while int(await client.get(KEY + ":completed") or 0) < before + waiting:
            assert proc.returncode is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            await asyncio.sleep(0.1)
        while '"worker_started"' not in log_path.read_text():  # its handlers are installed
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), DEADLINE_S) == 0, log_path.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return int(await client.get(KEY + ":completed") or 0) - before


def sizes(cloud: MotoCloud) -> dict[str, tuple[int, int]]:
    return {g: (cloud.desired(f"chat-{g}"), cloud.instances(f"chat-{g}")) for g in ("spot", "od")}


async def test_backlog_spot_first_stockout_on_demand_restart_cuts_nothing(
    registries: dict[str, Registry[Any]], cloud: MotoCloud, redis_url: str, tmp_path: Path
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

    # The fleet's instances serve the queue (a worker slot each); a restarted daemon resumes
    # its state and cuts no running ASG.
    running = cloud.instances("chat-spot") + cloud.instances("chat-od")
    assert await serve_with_workers(queue, redis_url, running, tmp_path / "worker.log") == 12
    assert await queue.llen(KEY) == 0
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
