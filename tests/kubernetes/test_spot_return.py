"""Stockout and return on the kubernetes provider (issue 9: "a stockout-and-return run moves
capacity back with no dip below desired"), through the real kubernetes-asyncio client, the real
tick pipeline and actuators, against the fake API server.

The daemon and the fake share a ``ManualClock``: pod boots, ``pending_timeout`` and the
unavailability hold pass when the test advances it. The ready pods are read from the fake (what
the cluster would serve with), not from the daemon's view of them, so a dip the daemon did not
notice still fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoscaler.config.models import parse_config
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.loop import PoolTick
from autoscaler.sources.memory import reset_queue
from tests.kubernetes.fake_api import FakeKubeApi, Workload

CONFIG = """
controller: {{interval: 1s, drain_timeout: 1s}}
providers:
  k8s: {{kind: kubernetes, kubeconfig: {kubeconfig}, context: test}}
pools:
  - name: chat
    queue: {{kind: memory, name: k8s-return}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 10, boot_time: 30s}}
    behavior: {{scale_up: {{rules: []}}}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: k8s, market: spot, hourly_price: 1.2, namespace: serving,
          deployment: chat-spot, pending_timeout: 1m}}
      - {{name: od, provider: k8s, market: on-demand, hourly_price: 4.0, namespace: serving,
          deployment: chat-od}}
"""

NEED = 4
STEP_S = 5.0
HOLD_S = 30.0


def ready(api: FakeKubeApi, w: Workload) -> int:
    """Pods of the workload that serve now: scheduled, booted and not being deleted."""
    now = api.clock.monotonic()
    return sum(1 for p in api.live(w) if p.ready(now))


def group(result: PoolTick, name: str) -> GroupState:
    assert result.fleet is not None
    state = result.fleet.group(name)
    assert state is not None
    return state


async def test_stockout_and_return_moves_capacity_back_without_a_dip(
    api: FakeKubeApi, kubeconfig_file: Path, clock: ManualClock,
    registries: dict[str, Registry[Any]],
) -> None:
    """Spot pods stay unschedulable past ``pending_timeout``: the shortfall moves to the
    on-demand Deployment. A GPU node joins: once the spot group's hold has passed, capacity
    moves back to spot make-before-break, and from the moment the queue's need was first
    served the ready pods across both Deployments never fall below it."""
    # Pods boot in 10 s here, so on-demand serves before the spot group's 30 s hold ends.
    spot = api.add("serving", "deployments", "chat-spot", boot_time_s=10.0)
    od = api.add("serving", "deployments", "chat-od", boot_time_s=10.0)
    spot.capacity = 0  # no GPU node for spot pods
    queue = reset_queue("k8s-return")
    for _ in range(NEED):
        queue.put(clock.wall(), 1.0)
    config = parse_config(CONFIG.format(kubeconfig=kubeconfig_file), registries=registries)
    daemon = Daemon.build(config, registries=registries, clock=clock)
    # A shorter hold than the product's 60 s keeps the run short; no doubling (first == cap).
    daemon.loop.unavailability.first_s = daemon.loop.unavailability.cap_s = HOLD_S
    await daemon.start()
    # (time, ready spot pods, ready od pods), sampled after every tick and every clock step.
    serving: list[tuple[float, int, int]] = []

    def sample() -> None:
        serving.append((clock.monotonic(), ready(api, spot), ready(api, od)))

    async def tick() -> PoolTick:
        [result] = await daemon.loop.tick()
        await daemon.loop.settle()
        sample()
        return result

    try:
        first = await tick()
        assert first.decision is not None
        assert dict(first.decision.targets) == {"spot": NEED, "od": 0}

        # The stockout: spot pods stay unschedulable past pending_timeout; in the tick that
        # sees it, the shortfall moves to od.
        held_at: float | None = None
        for _ in range(40):
            clock.advance(STEP_S)
            sample()
            result = await tick()
            s = group(result, "spot")
            if held_at is None and not s.available:
                held_at = clock.monotonic()
                assert "nvidia.com/gpu" in s.reason and s.pending == NEED
                assert result.decision is not None
                assert dict(result.decision.targets) == {"spot": 0, "od": NEED}
                assert (spot.replicas, od.replicas) == (0, NEED)
            if ready(api, od) == NEED:
                break
        else:
            pytest.fail(f"on-demand never carried the load: {serving[-5:]}")
        assert held_at is not None and held_at >= 60.0  # not before pending_timeout
        assert (spot.replicas, ready(api, spot)) == (0, 0)

        # The return: a GPU node joins. Spot is asked for again only once its hold has
        # passed, and grows while od still serves; od shrinks once spot pods are ready.
        spot.capacity = None
        assert clock.monotonic() < held_at + HOLD_S  # the node joins during the hold
        asked_at: float | None = None
        moved_back = False
        for _ in range(60):
            clock.advance(STEP_S)
            sample()
            result = await tick()
            if asked_at is None and spot.replicas > 0:
                asked_at = clock.monotonic()
            if (ready(api, spot) == NEED and od.replicas == 0 and not od.pods
                    and group(result, "od").desired == 0):
                moved_back = True
                break
        assert moved_back, f"capacity never moved back to spot: {serving[-8:]}"
        assert asked_at is not None and asked_at >= held_at + HOLD_S
        assert (spot.replicas, od.replicas) == (NEED, 0)
        # Make-before-break: spot pods served while od still had all of its own.
        assert any(s > 0 and o == NEED for _, s, o in serving)

        came_up = next(i for i, (_, s, o) in enumerate(serving) if s + o >= NEED)
        dips = [row for row in serving[came_up:] if row[1] + row[2] < NEED]
        assert not dips, f"ready pods fell below {NEED} while moving back: {dips}"
    finally:
        await daemon.close(0.0)
