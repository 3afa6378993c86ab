"""The daemon on the ``gcp`` provider: real google-cloud-compute clients, a local Compute REST
fake (``fake_compute``), the real tick pipeline and actuators.

The daemon and the fake share a ``ManualClock``: boot times and capacity holds pass when the
test advances it; HTTP calls and the actuators' retry sleeps take real (short) time. Retries
use a small backoff base here so a burst of 429 costs well under a second; which errors are
retried, and how, is the product's policy unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.actuator import RetryPolicy, Unavailability
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.loop import PoolTick
from autoscaler.sources.memory import reset_queue
from tests.gcp.fake_compute import FakeCompute
from tests.gcp.support import AnonymousGcpProvider

POOL = """
controller: {{interval: 1s}}
providers:
  gcp-prod: {{kind: gcp, project: proj-test, endpoint: "{endpoint}", describe_timeout: 20s}}
pools:
  - name: chat
    queue: {{kind: memory, name: q-gcp}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20, boot_time: 30s}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
{groups}
"""
SPOT = ("{name: spot, provider: gcp-prod, market: spot, hourly_price: 1.0, "
        "zone: us-central1-a, mig: chat-spot}")
OD = ("{name: od, provider: gcp-prod, market: on-demand, hourly_price: 4.0, "
      "region: us-central1, mig: chat-od}")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeCompute]:
    compute = FakeCompute(clock, boot_s=30.0).start()
    compute.add_mig("chat-spot", zone="us-central1-a")
    compute.add_mig("chat-od", zone=None, region="us-central1")
    yield compute
    compute.stop()


def config(registries: dict[str, Registry[Any]], endpoint: str, *groups: str) -> Config:
    registries["providers"].register("gcp", AnonymousGcpProvider)
    lines = "\n".join(f"      - {g}" for g in groups)
    return parse_config(POOL.format(endpoint=endpoint, groups=lines), registries=registries)


async def daemon_on(registries: dict[str, Registry[Any]], fake: FakeCompute,
                    clock: ManualClock, *groups: str) -> Daemon:
    daemon = Daemon.build(config(registries, fake.endpoint, *groups), registries=registries,
                          clock=clock)
    daemon.loop.retry = RetryPolicy(base_s=0.02, cap_s=0.2)
    daemon.loop.unavailability = Unavailability(daemon.loop.retry)
    await daemon.start()
    return daemon


def backlog(clock: ManualClock, n: int) -> None:
    queue = reset_queue("q-gcp")
    for _ in range(n):
        queue.put(clock.wall(), 1.0)


async def tick(daemon: Daemon) -> PoolTick:
    [result] = await daemon.loop.tick()
    await daemon.loop.settle()
    return result


async def settle_advancing(daemon: Daemon, clock: ManualClock) -> None:
    """Settle while the shared clock moves on: an actuator's retry waits for the loop clock
    to pass its hold, and a ManualClock moves only when told."""
    settled = asyncio.ensure_future(daemon.loop.settle())
    while not settled.done():
        clock.advance(0.05)
        await asyncio.sleep(0.01)
    await settled


def group(result: PoolTick, name: str) -> GroupState:
    assert result.fleet is not None
    state = result.fleet.group(name)
    assert state is not None
    return state


async def test_a_tick_resizes_the_mig_through_the_sdk(
    registries: dict[str, Registry[Any]], fake: FakeCompute, clock: ManualClock,
) -> None:
    daemon = await daemon_on(registries, fake, clock, SPOT)
    backlog(clock, 3)
    first = await tick(daemon)
    assert group(first, "spot").desired == 0
    assert first.decision is not None and dict(first.decision.targets) == {"spot": 3}
    assert fake.mig("chat-spot").target_size == 3
    [(mig, size, request_id)] = fake.applied
    assert (mig, size) == ("chat-spot", 3) and uuid.UUID(request_id)
    assert len(fake.calls("wait")) == 1  # polled on our own operations client, to DONE
    clock.advance(1.0)
    second = await tick(daemon)
    spot = group(second, "spot")
    assert (spot.desired, spot.booting, spot.running) == (3, 3, 0)
    assert len(fake.applied) == 1  # the accepted size is not sent again
    clock.advance(30.0)
    spot = group(await tick(daemon), "spot")
    assert (spot.desired, spot.running, spot.available) == (3, 3, True)
    await daemon.close(1.0)


async def test_a_stockout_moves_the_shortfall_to_the_next_group_within_one_tick(
    registries: dict[str, Registry[Any]], fake: FakeCompute, clock: ManualClock,
) -> None:
    fake.set_failing("chat-spot", True)
    daemon = await daemon_on(registries, fake, clock, SPOT, OD)
    backlog(clock, 4)
    with capture_logs() as logs:
        first = await tick(daemon)
        assert first.decision is not None
        assert dict(first.decision.targets) == {"spot": 4, "od": 0}
        assert fake.mig("chat-spot").target_size == 4  # accepted, then falls short
        clock.advance(1.0)
        second = await tick(daemon)
    spot = group(second, "spot")
    assert not spot.available and "ZONE_RESOURCE_POOL_EXHAUSTED" in spot.reason
    assert (spot.pending, spot.booting, spot.running) == (4, 0, 0)
    assert second.decision is not None
    assert dict(second.decision.targets) == {"spot": 0, "od": 4}
    assert fake.mig("chat-od").target_size == 4
    assert fake.mig("chat-spot").target_size == 0  # the pending shortfall withdrawn
    [event] = [e for e in logs if e["event"] == "group_unavailable"]
    assert event["group"] == "chat/spot" and "capacity unavailable" in event["error"]
    await daemon.close(1.0)


async def test_stockout_and_return_moves_back_with_no_dip_below_desired(
    registries: dict[str, Registry[Any]], fake: FakeCompute, clock: ManualClock,
) -> None:
    fake.set_failing("chat-spot", True)
    daemon = await daemon_on(registries, fake, clock, SPOT, OD)
    backlog(clock, 4)
    serving: list[tuple[float, int, int]] = []  # (time, running spot, running od)
    for _ in range(8):  # the stockout: on-demand boots and carries the load
        result = await tick(daemon)
        serving.append((clock.monotonic(), group(result, "spot").running,
                        group(result, "od").running))
        clock.advance(5.0)
    assert fake.mig("chat-od").target_size == 4 and serving[-1][2] == 4
    fake.set_failing("chat-spot", False)  # spot capacity returns
    for _ in range(60):
        result = await tick(daemon)
        spot, od = group(result, "spot"), group(result, "od")
        serving.append((clock.monotonic(), spot.running, od.running))
        if spot.running == 4 and od.desired == 0 and od.draining == 0:
            break
        clock.advance(5.0)
    else:
        pytest.fail(f"capacity never moved back to spot: {serving[-5:]}")
    came_up = next(i for i, (_, s, o) in enumerate(serving) if s + o >= 4)
    dips = [row for row in serving[came_up:] if row[1] + row[2] < 4]
    assert not dips, f"running fell below desired while moving back: {dips}"
    assert fake.mig("chat-spot").target_size == 4
    await daemon.close(1.0)


async def test_a_burst_of_429_is_retried_with_backoff_and_one_resize(
    registries: dict[str, Registry[Any]], fake: FakeCompute, clock: ManualClock,
) -> None:
    daemon = await daemon_on(registries, fake, clock, SPOT)
    backlog(clock, 3)
    fake.inject("resize", 429, "rateLimitExceeded", count=3)
    # Then a resize the API carried out but whose answer was lost: the retry must not be a
    # second change.
    fake.inject("resize", 503, "backendError", after=True)
    with capture_logs() as logs:
        await daemon.loop.tick()
        await settle_advancing(daemon, clock)
    calls = fake.calls("resize")
    assert len(calls) == 5
    assert len({c["requestId"][0] for c in calls}) == 1  # one actuation, one request id
    assert len(fake.applied) == 1 and fake.mig("chat-spot").target_size == 3
    failures = [(e["error_class"], e["retry_in_s"]) for e in logs
                if e["event"] == "resize_failed"]
    assert [kind for kind, _ in failures] == ["throttled"] * 3 + ["transient"]
    assert all(0 < hold <= 0.2 for _, hold in failures)  # backed off each time
    await daemon.close(1.0)
