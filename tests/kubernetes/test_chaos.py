"""Chaos on the Kubernetes path, through the real kubernetes-asyncio client and the fake API
server: bursts of 500 and 429 under a running loop, and SIGTERM to an ``autoscaler run``
process whose resize call hangs."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from autoscaler.config.models import parse_config
from autoscaler.registry import Registry
from autoscaler.runtime.actuator import RetryPolicy
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.sources.memory import reset_queue
from autoscaler.testing import free_port
from tests.kubernetes.fake_api import FakeKubeApi

CONFIG = """
controller: {{interval: {interval}, drain_timeout: {drain}{metrics}}}
providers:
  k8s: {{kind: kubernetes, kubeconfig: {kubeconfig}, context: test}}
pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: {min}, max: 8, boot_time: 0s}}
    policy: {{kind: threshold}}
    behavior: {{scale_up: {{rules: []}}}}
    groups:
      - {{name: main, provider: k8s, namespace: serving, deployment: chat}}
"""


async def until(check: Any, what: str, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, f"never: {what}"
        await asyncio.sleep(0.02)


async def test_bursts_of_500_and_429_are_counted_and_decisions_continue(
    api: FakeKubeApi, kubeconfig_file: Path, registries: dict[str, Registry[Any]],
) -> None:
    chat = api.add("serving", "deployments", "chat", boot_time_s=0)
    queue = reset_queue("k8s-burst")
    config = parse_config(CONFIG.format(interval="100ms", drain="1s", metrics="", min=1,
                                        kubeconfig=kubeconfig_file, queue="k8s-burst"),
                          registries=registries)
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(config, registries=registries, telemetry=telemetry)
    daemon.loop.retry = RetryPolicy(base_s=0.01, cap_s=0.05)
    sample = telemetry.registry.get_sample_value
    replicas: list[int] = []
    stop = asyncio.Event()
    await daemon.start()
    run = asyncio.create_task(daemon.loop.run(stop, on_tick=lambda _: replicas.append(
        chat.replicas)))
    try:
        await until(lambda: chat.replicas == 1, "min reached")
        api.fail_next(500, count=20)  # the API server has a bad minute: describes fail
        for _ in range(5):
            queue.put(time.time(), 1.0)
        await until(lambda: not api.failures, "the 500s consumed")
        api.fail_next(429, count=6, headers={"Retry-After": "0.05"})
        await until(lambda: chat.replicas == 5, "scaled out after the bursts")
        assert not run.done()
    finally:
        stop.set()
        await asyncio.wait_for(run, 5)
        await daemon.close(1.0)
    errors = {(labels["operation"], labels["error"]) for family in telemetry.registry.collect()
              for s in family.samples if s.name == "autoscaler_provider_errors_total"
              for labels in [s.labels] if s.value > 0}
    assert ("describe", "transient") in errors and any(e == "throttled" for _, e in errors)
    assert all(b >= a for a, b in itertools.pairwise(replicas))  # never down
    assert not sample("autoscaler_scale_actions_total", {"pool": "chat", "direction": "down"})


async def test_sigterm_during_a_hanging_resize_exits_within_the_drain_deadline(
    api: FakeKubeApi, kubeconfig_file: Path, tmp_path: Path,
) -> None:
    api.add("serving", "deployments", "chat", boot_time_s=0)
    api.slow["PATCH"] = 120.0  # the resize never answers in time
    drain = 2.0
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(
        interval="200ms", drain=f"{drain:g}s", min=2, kubeconfig=kubeconfig_file,
        queue="k8s-term", metrics=f', metrics_address: "127.0.0.1:{free_port()}"'))
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autoscaler", "run", "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    try:
        await until(lambda: ("PATCH", "/apis/apps/v1/namespaces/serving/deployments/chat/"
                             "scale") in api.requests, "a resize in flight", 30)
        await asyncio.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), drain + 20)
        took = time.monotonic() - sent
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert took <= drain + 5, f"shutdown took {took:.1f} s"
    events = [json.loads(line) for line in log.read_text().splitlines()]  # all JSON
    names = [e["event"] for e in events]
    assert "resize_abandoned" in names
    assert "daemon_draining" in names and names[-1] == "daemon_stopped"
    assert proc.returncode in (0, 1)
