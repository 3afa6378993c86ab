"""What the per-pool sources share (``autoscaler.sources.polled``), the README's examples of
them, the one-pool-per-queue check for their kinds, and a daemon tick on one of them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.errors import SourceError
from autoscaler.registry import Registry
from autoscaler.runtime.app import run_daemon
from autoscaler.sources.polled import (
    PolledSampler,
    Reading,
    redact_url,
    split_credentials,
    validate_http_url,
)

README = Path(__file__).resolve().parent.parent / "README.md"


class Q(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class Scripted(PolledSampler[Q]):
    """Answers what each queue's script says: a Reading, an exception, or a delay first."""

    source = "scripted"

    def __init__(self, names: list[str], clock: ManualClock, timeout_s: float,
                 concurrency: int = 32) -> None:
        super().__init__([(n, Q(name=n)) for n in names], clock, timeout_s, Q,
                         concurrency=concurrency)
        self.script: dict[str, Reading | Exception] = {}
        self.delay: dict[str, float] = {}
        self.active = 0
        self.peak = 0

    def describe(self, settings: Q) -> str:
        return f"queue {settings.name}"

    async def read(self, pool: str, settings: Q) -> Reading:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay.get(pool, 0.001))
            answer = self.script[pool]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.active -= 1


async def test_a_failing_and_a_late_pool_go_stale_alone_and_recover_with_a_log() -> None:
    clock = ManualClock()
    sampler = Scripted(["ok", "bad", "late"], clock, 0.2)
    sampler.script = {p: Reading(depth=3, in_flight=1, arrivals=10) for p in ("ok", "bad", "late")}
    first = await sampler.sample()
    sampler.script["bad"] = SourceError("boom")
    sampler.delay["late"] = 5.0
    clock.advance(1)
    with capture_logs() as logs:
        second = await sampler.sample()
        third = await sampler.sample()  # same failures: not logged twice
    assert all(o.fresh for o in first.values())
    assert second["ok"].fresh and not second["bad"].fresh and not second["late"].fresh
    assert (second["bad"].depth, second["bad"].in_flight) == (3, 1)  # last known, no rates
    assert second["bad"].arrival_rate is None and third["ok"].fresh
    failed = {e["pool"]: e for e in logs if e["event"] == "queue_sample_failed"}
    assert set(failed) == {"bad", "late"} and len(logs) == 2
    assert failed["bad"]["error"] == "boom" and failed["bad"]["queue"] == "queue bad"
    assert "sample timeout (0.2 s)" in failed["late"]["error"]
    sampler.script["bad"] = Reading(depth=0)
    with capture_logs() as logs:
        fourth = await sampler.sample()
    assert fourth["bad"].fresh and fourth["bad"].oldest_wait_s == 0.0
    assert [e["pool"] for e in logs if e["event"] == "queue_sample_recovered"] == ["bad"]


async def test_never_measured_pool_is_stale_zero_and_rates_come_from_counters() -> None:
    clock = ManualClock()
    sampler = Scripted(["p"], clock, 1.0)
    sampler.script["p"] = SourceError("down")
    never = (await sampler.sample())["p"]
    assert (never.depth, never.fresh) == (0, False)
    sampler.script["p"] = Reading(depth=1, arrivals=100, completed=50)
    await sampler.sample()
    clock.advance(10)
    sampler.script["p"] = Reading(depth=1, arrivals=150, completed=40)  # completed reset
    obs = (await sampler.sample())["p"]
    assert obs.arrival_rate == pytest.approx(5.0) and obs.completion_rate is None


async def test_head_times_are_judged_and_implausible_ones_are_unknown() -> None:
    clock = ManualClock()
    sampler = Scripted(["ms", "ok", "future", "measured"], clock, 1.0)
    wall = clock.wall()
    sampler.script = {
        "ms": Reading(depth=2, oldest_enqueued_at=(wall - 3) * 1000),
        "ok": Reading(depth=2, oldest_enqueued_at=wall - 3),
        "future": Reading(depth=2, oldest_enqueued_at=wall + 3600),
        "measured": Reading(depth=2, oldest_wait_s=-1.0),  # a server's rounding: never < 0
    }
    obs = await sampler.sample()
    assert obs["ok"].oldest_wait_s == pytest.approx(3.0)
    assert obs["ms"].oldest_wait_s is None and obs["future"].oldest_wait_s is None
    assert obs["measured"].oldest_wait_s == 0.0
    assert sampler.invalid.counts == {("ms", "milliseconds"): 1, ("future", "future"): 1}


async def test_concurrency_is_bounded() -> None:
    sampler = Scripted([f"p{i}" for i in range(40)], ManualClock(), 2.0, concurrency=4)
    sampler.script = {f"p{i}": Reading(depth=i) for i in range(40)}
    sampler.delay = {f"p{i}": 0.01 for i in range(40)}
    obs = await sampler.sample()
    assert sampler.peak == 4 and [obs[f"p{i}"].depth for i in range(40)] == list(range(40))


def test_url_helpers_never_echo_a_password() -> None:
    assert redact_url("http://u:p@ss/w#rd@host:9/x") == "http://u:***@host:9/x"
    assert redact_url("http://token@host") == "http://***@host"
    bare, headers = split_credentials("https://u%40x:p%2Fw@prom:9090/path")
    assert bare == "https://prom:9090/path"
    assert headers == {"Authorization": "Basic dUB4OnAvdw=="}  # base64("u@x:p/w")
    assert split_credentials("http://prom") == ("http://prom", {})
    with pytest.raises(ValueError, match="http://") as raised:
        validate_http_url("ftp://u:secret@x", "Prometheus")
    assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match="invalid Prometheus URL"):
        validate_http_url("http://x:99999", "Prometheus")


def test_the_readme_examples_of_these_sources_load(
    registries: dict[str, Registry[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RABBIT_PASSWORD", "from-the-environment")
    text = README.read_text()
    section = text[text.index("## Queues outside Redis"):text.index("## Configuration reference")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    kinds = [parse_config(b, "README.md", registries=registries).pools[0].queue.kind
             for b in blocks]
    assert kinds == ["prometheus", "sqs", "nats-jetstream", "rabbitmq"]


@pytest.mark.parametrize("queue", [
    "{kind: sqs, queue_url: 'https://sqs.us-east-1.amazonaws.com/1/jobs'}",
    "{kind: prometheus, url: 'http://prom', preset: vllm}",
    "{kind: rabbitmq, url: 'amqp://rabbit/', queue: jobs}",
    "{kind: nats-jetstream, url: 'nats://n', stream: S, consumer: c}",
])
def test_two_pools_on_one_queue_are_refused(
    registries: dict[str, Registry[Any]], queue: str,
) -> None:
    def pool(name: str) -> str:
        return (f"  - name: {name}\n    queue: {queue}\n    sla: {{max_wait: 2s}}\n"
                "    capacity: {max: 2}\n    groups: [{name: g, provider: local, "
                "command: ['true']}]\n")

    text = "pools:\n" + pool("a") + pool("b")
    with pytest.raises(ConfigFileError, match="uses the same queue as pool 'a'"):
        parse_config(text, registries=registries)


@pytest.fixture
async def prometheus_api() -> AsyncIterator[str]:
    async def query(request: web.Request) -> web.Response:
        form = await request.post()
        value = {"sum(waiting) or vector(0)": "12"}.get(str(form["query"]))
        result = [] if value is None else [{"metric": {}, "value": [0, value]}]
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_post("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_a_daemon_tick_decides_from_a_prometheus_queue(
    registries: dict[str, Registry[Any]], prometheus_api: str,
) -> None:
    text = f"""
pools:
  - name: chat
    queue: {{kind: prometheus, url: '{prometheus_api}', depth: 'sum(waiting) or vector(0)'}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 5}}
    policy: {{kind: threshold}}
    groups: [{{name: g, provider: local, command: ['true']}}]
"""
    out = io.StringIO()
    code = await run_daemon(parse_config(text, registries=registries), registries=registries,
                            once=True, dry_run=True, out=out)
    assert code == 0, os.linesep.join(out.getvalue().splitlines()[-5:])
    [record] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["pool"] == "chat" and record["depth"] == 12
    assert record["current"] == 0 and record["desired"] > 0 and record["oldest_wait_s"] is None
