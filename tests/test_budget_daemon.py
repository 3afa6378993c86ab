"""Budget guardrails in the daemon: accrual from described fleets, persistence in a real
redis-server across a restart, the hard cap in the cross-pool step, and the alert webhook
against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.webhook import WebhookSender
from autoscaler.sources.memory import reset_queue
from tests.test_daemon_state import CloudGroup

START = datetime(2026, 12, 31, 14, 0, tzinfo=UTC).timestamp()  # ten hours before the month ends

CONFIG = """
controller:
  interval: 10s
  state_store: {store}
{top}pools:
  - name: chat
    queue: {{kind: memory, name: {queue}}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 2, max: 50, boot_time: 60s}}
    policy: {{kind: threshold}}
    behavior: {{scale_up: {{rules: []}}}}
    budget: {pool_budget}
    groups:
      - {{name: g, provider: cloud, hourly_price: 3.6}}
"""


def config(registries: dict[str, Registry[Any]], queue: str, *, store: str = "none",
           pool_budget: str = "{monthly_usd: 1000}", top: str = "") -> Config:
    registries["providers"].register("cloud", CloudGroup)
    text = CONFIG.format(queue=queue, store=store, pool_budget=pool_budget, top=top)
    return parse_config(text, "budget.yaml", registries=registries)


def clock_at(wall: float) -> ManualClock:
    return ManualClock(start=1000.0, wall_offset=wall - 1000.0)


def sample(telemetry: PrometheusTelemetry, name: str, scope: str) -> float | None:
    return telemetry.registry.get_sample_value(name, {"scope": scope})


async def test_spend_accrues_from_billed_instances_and_survives_a_restart(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """10 instances at $3.60/h = $36/h, i.e. $0.01/s. 100 s observed → $1; after a restart on
    the same store, the 10 s gap (charged at the last rate) and 90 s more → $2."""
    CloudGroup.sizes["g"] = 10
    clock = clock_at(START)
    queue = reset_queue("bd-restart")
    for _ in range(10):
        queue.put(clock.wall(), 1.0)
    cfg = config(registries, "bd-restart", store=f"{{url: '{redis_url}', prefix: 'bt:'}}",
                 top="budget: {monthly_usd: 5000}\n")
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(cfg, registries=registries, clock=clock, telemetry=telemetry)
    for _ in range(11):
        await daemon.loop.tick()
        clock.advance(10.0)
    budget = daemon.extensions.budget if daemon.extensions else None
    assert budget is not None
    assert budget.ledgers["pool:chat"].spent_usd == pytest.approx(1.0)
    assert budget.ledgers["global"].spent_usd == pytest.approx(1.0)
    assert sample(telemetry, "autoscaler_budget_spent_usd", "pool:chat") == pytest.approx(1.0)
    assert sample(telemetry, "autoscaler_budget_used_ratio", "pool:chat") == pytest.approx(1e-3)
    rate = sample(telemetry, "autoscaler_budget_cost_rate_usd_per_hour", "global")
    assert rate == pytest.approx(36)
    await daemon.close(1.0)

    # The restart: 10 s later (within the gap charged at the last rate), then 90 s more.
    with capture_logs() as logs:
        daemon2 = Daemon.build(cfg, registries=registries, clock=clock)
        for _ in range(10):
            await daemon2.loop.tick()
            clock.advance(10.0)
    resumed = [e["scope"] for e in logs if e["event"] == "budget_resumed"]
    assert sorted(resumed) == ["global", "pool:chat"]
    assert daemon2.extensions is not None and daemon2.extensions.budget is not None
    assert daemon2.extensions.budget.ledgers["pool:chat"].spent_usd == pytest.approx(2.0)
    await daemon2.close(1.0)


async def test_a_dry_run_or_standby_never_overwrites_the_stored_month(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    import redis

    CloudGroup.sizes["g"] = 10
    clock = clock_at(START)
    reset_queue("bd-dry")
    cfg = config(registries, "bd-dry", store=f"{{url: '{redis_url}'}}")
    daemon = Daemon.build(cfg, registries=registries, clock=clock, dry_run=True)
    for _ in range(3):
        await daemon.loop.tick()
        clock.advance(10.0)
    await daemon.close(1.0)
    client = redis.Redis.from_url(redis_url)
    assert client.keys("autoscaler:state:budget:*") == []
    client.close()


async def test_the_hard_cap_holds_scale_out_but_keeps_min(
    registries: dict[str, Registry[Any]]
) -> None:
    """$1000 a month with $964 spent and 10 h left: $3.60/h is allowed, one instance at $3.60/h.
    The queue wants 40; the pool is at 0 with min 2: the cap keeps min (2), not 1, not 40."""
    CloudGroup.sizes["g"] = 0
    clock = clock_at(START)
    queue = reset_queue("bd-cap")
    for _ in range(40):
        queue.put(clock.wall(), 1.0)
    cfg = config(registries, "bd-cap", pool_budget="{monthly_usd: 1000, hard_cap: true}")
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(cfg, registries=registries, clock=clock, telemetry=telemetry)
    budget = daemon.extensions.budget if daemon.extensions else None
    assert budget is not None
    from autoscaler.core.budget import Ledger

    budget.ledgers["pool:chat"] = Ledger("2026-12", spent_usd=964.0)
    await daemon.start()
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
    assert tick.decision is not None and tick.decision.desired == 2
    assert tick.decision.terms["budget_capped_from"] == 40
    assert [e["wanted"] for e in logs if e["event"] == "budget_cap"] == [40]
    await daemon.loop.settle()
    assert CloudGroup.sizes["g"] == 2
    assert telemetry.registry.get_sample_value(
        "autoscaler_budget_held_instances", {"pool": "chat"}) == 38
    assert telemetry.registry.get_sample_value(  # the capped decision, not the wish
        "autoscaler_desired_instances", {"pool": "chat"}) == 2
    assert telemetry.registry.get_sample_value(
        "autoscaler_recommended_instances", {"pool": "chat"}) == 40

    # With 5 running, nothing is scaled in by the cap: 5 stay while 40 are wanted.
    CloudGroup.sizes["g"] = 5
    clock.advance(10.0)
    [tick] = await daemon.loop.tick()
    assert tick.decision is not None and tick.decision.desired == 5
    # More budget left lifts the cap: $260 over the 10 h left pays $26/h, 7 instances.
    budget.ledgers["pool:chat"] = Ledger("2026-12", spent_usd=740.0, rate_usd_per_h=18.0,
                                         last_wall=clock.wall())
    clock.advance(10.0)
    [tick] = await daemon.loop.tick()
    assert tick.decision is not None and tick.decision.desired == 7
    await daemon.close(1.0)


# --------------------------------------------------------------------------- the webhook


class Receiver:
    """A real HTTP server on loopback that answers 500 to the first ``fail`` POSTs."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver.release.wait(10)
                receiver.bodies.append(body)
                status = 500 if len(receiver.bodies) <= receiver.fail else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/budget?token=s3cret"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


async def test_webhook_retries_with_backoff_until_delivered(receiver: Receiver) -> None:
    sender = WebhookSender(receiver.url, timeout_s=2.0, retries=3, backoff_s=0.05)
    with capture_logs() as logs:
        delivered = await sender.send({"event": "budget_alert", "scope": "global"})
    assert delivered is True
    assert len(receiver.bodies) == 3 and receiver.bodies[-1]["event"] == "budget_alert"
    failed = [e for e in logs if e["event"] == "webhook_attempt_failed"]
    assert [e["error"] for e in failed] == ["HTTP 500", "HTTP 500"]
    assert all("s3cret" not in json.dumps(e) for e in logs)  # the token stays out of logs


async def test_webhook_gives_up_after_its_retries() -> None:
    r = Receiver(fail=100)
    try:
        sender = WebhookSender(r.url, timeout_s=2.0, retries=1, backoff_s=0.01)
        with capture_logs() as logs:
            assert await sender.send({"event": "budget_alert"}) is False
        assert len(r.bodies) == 2
        assert [e["attempts"] for e in logs if e["event"] == "webhook_failed"] == [2]
    finally:
        r.close()


async def test_webhook_times_out_on_a_silent_server() -> None:
    r = Receiver()
    r.release.clear()  # the handler holds every request
    try:
        sender = WebhookSender(r.url, timeout_s=0.2, retries=0)
        with capture_logs() as logs:
            assert await sender.send({"event": "budget_alert"}) is False
        [failed] = [e for e in logs if e["event"] == "webhook_failed"]
        assert "timed out" in failed["error"]
    finally:
        r.close()


async def test_an_alert_crossing_posts_once_without_blocking_the_tick(
    registries: dict[str, Registry[Any]]
) -> None:
    """The first tick crosses 80 %: one budget_alert line, one POST, delivered in the
    background while the receiver holds it; later ticks in the same month post nothing."""
    r = Receiver()
    r.release.clear()
    try:
        CloudGroup.sizes["g"] = 10
        clock = clock_at(START)
        reset_queue("bd-hook")
        cfg = config(registries, "bd-hook", pool_budget=(
            f"{{monthly_usd: 10, alert_at: 0.8, webhook: {{url: '{r.url}', timeout: 5s}}}}"))
        telemetry = PrometheusTelemetry()
        daemon = Daemon.build(cfg, registries=registries, clock=clock, telemetry=telemetry)
        assert daemon.extensions is not None and daemon.extensions.budget is not None
        from autoscaler.core.budget import Ledger

        daemon.extensions.budget.ledgers["pool:chat"] = Ledger("2026-12", spent_usd=8.5)
        with capture_logs() as logs:
            await daemon.loop.tick()  # returns while the receiver still holds the POST
            assert r.bodies == []
            clock.advance(10.0)
            await daemon.loop.tick()
        r.release.set()
        sender = daemon.extensions.budget.webhooks["pool:chat"]
        for _ in range(200):
            if r.bodies:
                break
            await asyncio.sleep(0.01)
        await sender.close(5.0)
        assert [e["event"] for e in logs if e["event"].startswith("budget_")] == ["budget_alert"]
        assert len(r.bodies) == 1
        body = r.bodies[0]
        assert body["event"] == "budget_alert" and body["scope"] == "pool:chat"
        assert body["month"] == "2026-12" and body["ratio"] == 0.85
        assert telemetry.registry.get_sample_value(
            "autoscaler_budget_alerts_total", {"scope": "pool:chat", "level": "alert"}) == 1
        await daemon.close(1.0)
    finally:
        r.close()


def test_budget_config_errors_name_the_line(registries: dict[str, Registry[Any]]) -> None:
    from autoscaler.config.yaml_lines import ConfigFileError

    with pytest.raises(ConfigFileError) as info:
        config(registries, "bd-bad", pool_budget="{monthly_usd: -1, alert_at: 1.5}")
    text = "\n".join(info.value.messages)
    assert "budget.yaml:12: pools[0].budget.monthly_usd" in text
    assert "pools[0].budget.alert_at" in text
    with pytest.raises(ConfigFileError) as info:
        config(registries, "bd-bad", pool_budget="{monthly_usd: 5, webhook: {url: 'ftp://x'}}")
    assert "webhook.url: must be an http:// or https:// URL" in "\n".join(info.value.messages)


async def test_run_once_never_writes_the_month(
    registries: dict[str, Registry[Any]], redis_url: str
) -> None:
    """One look (``run --once``) must not write over the spend of a daemon acting on the same
    pools: it loads the stored month read-only."""
    import io

    import redis

    from autoscaler.runtime.app import run_once

    CloudGroup.sizes["g"] = 2
    reset_queue("bd-once")
    cfg = config(registries, "bd-once", store=f"{{url: '{redis_url}'}}")
    client = redis.Redis.from_url(redis_url)
    stored = '{"$type": "autoscaler.core.budget.Ledger", "fields": {"month": "2026-12", ' \
             '"spent_usd": 12.5, "rate_usd_per_h": 7.2, "last_wall": %r, "alerted": 0}}' % (
                 START - 30)
    client.set("autoscaler:state:budget:pool:chat", stored)
    daemon = Daemon.build(cfg, registries=registries, clock=clock_at(START))
    out = io.StringIO()
    assert await run_once(daemon, out) == 0
    assert daemon.extensions is not None and daemon.extensions.budget is not None
    assert daemon.extensions.budget.ledgers["pool:chat"].spent_usd == pytest.approx(12.56)
    assert client.get("autoscaler:state:budget:pool:chat").decode() == stored  # untouched
    client.close()


async def test_only_the_actor_posts_the_webhook(registries: dict[str, Registry[Any]]) -> None:
    """A dry run (like a standby, ``--once`` or ``explain``) logs the crossing but never posts:
    with several replicas the receiver gets one message, from the actor."""
    r = Receiver()
    try:
        CloudGroup.sizes["g"] = 10
        clock = clock_at(START)
        reset_queue("bd-standby")
        cfg = config(registries, "bd-standby", pool_budget=(
            f"{{monthly_usd: 10, webhook: {{url: '{r.url}'}}}}"))
        daemon = Daemon.build(cfg, registries=registries, clock=clock, dry_run=True)
        assert daemon.extensions is not None and daemon.extensions.budget is not None
        from autoscaler.core.budget import Ledger

        daemon.extensions.budget.ledgers["pool:chat"] = Ledger("2026-12", spent_usd=9.0)
        with capture_logs() as logs:
            await daemon.loop.tick()
        await daemon.close(1.0)
        assert [e["event"] for e in logs if e["event"] == "budget_alert"] == ["budget_alert"]
        assert r.bodies == []
    finally:
        r.close()


async def test_a_pool_held_by_the_hard_cap_while_waits_exceed_the_sla_is_saturated(
    registries: dict[str, Registry[Any]]
) -> None:
    """Below ``max`` (50) but cut by the budget to 2 while the oldest wait (5 s) exceeds the
    SLA (2 s): saturated with cause ``budget_cap``; serving the backlog ends it."""
    CloudGroup.sizes["g"] = 0
    clock = clock_at(START)
    queue = reset_queue("bd-sat")
    for _ in range(40):
        queue.put(clock.wall(), 1.0)
    clock.advance(5.0)
    cfg = config(registries, "bd-sat", pool_budget="{monthly_usd: 1000, hard_cap: true}")
    telemetry = PrometheusTelemetry()
    daemon = Daemon.build(cfg, registries=registries, clock=clock, telemetry=telemetry)
    budget = daemon.extensions.budget if daemon.extensions else None
    assert budget is not None
    from autoscaler.core.budget import Ledger

    budget.ledgers["pool:chat"] = Ledger("2026-12", spent_usd=964.0)
    await daemon.start()
    try:
        with capture_logs() as logs:
            [tick] = await daemon.loop.tick()
            await daemon.loop.tick()  # still held: no second warning
        assert tick.decision is not None and tick.decision.desired == 2
        warnings = [e for e in logs if e["event"] == "pool_saturated"]
        assert len(warnings) == 1
        assert warnings[0]["cause"] == "budget_cap" and warnings[0]["wanted"] == 40
        assert warnings[0]["desired"] == 2 and warnings[0]["max_instances"] == 50
        assert telemetry.registry.get_sample_value(
            "autoscaler_pool_saturated", {"pool": "chat"}) == 1
        while queue.take_nowait(clock.wall()) is not None:  # the backlog is served
            pass
        with capture_logs() as logs:
            await daemon.loop.tick()
        assert [e["pool"] for e in logs if e["event"] == "pool_saturation_ended"] == ["chat"]
        assert telemetry.registry.get_sample_value(
            "autoscaler_pool_saturated", {"pool": "chat"}) == 0
    finally:
        await daemon.close(1.0)
