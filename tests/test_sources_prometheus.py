"""The ``prometheus`` source against a local HTTP server speaking the Prometheus query API
(``/api/v1/query``, the published response shape), and against a real ``prometheus`` scraping
a vLLM-shaped exporter when the binary is installed (``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.sources.prometheus import PrometheusSource, parse_value
from autoscaler.sources.prometheus.settings import PrometheusSettings

Answer = Callable[[], Any]


def vector(*values: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"i": str(i)}, "value": [time.time(), v]} for i, v in enumerate(values)]}}


class FakePrometheus:
    """Answers the queries it was told about, as Prometheus does; any other query is a
    ``bad_data`` error with HTTP 400, as Prometheus answers a parse error."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.delay_s = 0.0
        self.batches = 0
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else request.query
        query = str(form.get("query", ""))
        self.seen.append((request.method, query, dict(request.headers)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        batch = BATCHED.findall(query)
        if batch and " or ".join(BATCHED_PART.format(q, i) for q, i in batch) == query:
            return self.batch(batch)
        answer = self.answers.get(query)
        if answer is None:
            return bad_data(f"1:1: parse error: unknown query {query}")
        return web.json_response(answer())

    def batch(self, parts: list[tuple[str, str]]) -> web.Response:
        """What Prometheus does with ``label_replace(q, "autoscaler_query", "i", "", "") or
        ...``: every part must be a known instant vector, each series gets the label."""
        self.batches += 1
        result = []
        for query, index in parts:
            answer = self.answers.get(query)
            if answer is None:
                return bad_data(f"1:1: parse error: unknown query {query}")
            body = answer()
            if body.get("status") != "success":
                return web.json_response(body, status=422)
            if body["data"]["resultType"] != "vector":
                return bad_data("expected type instant vector in call to function "
                                "\"label_replace\", got scalar")
            for sample in body["data"]["result"]:
                result.append({"metric": {**sample["metric"], "autoscaler_query": index},
                               "value": sample["value"]})
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": result}})


BATCHED = re.compile(r'label_replace\((.*?), "autoscaler_query", "(\d+)", "", ""\)')
BATCHED_PART = 'label_replace({}, "autoscaler_query", "{}", "", "")'


def bad_data(error: str) -> web.Response:
    return web.json_response({"status": "error", "errorType": "bad_data", "error": error},
                             status=400)


async def not_json(_request: web.Request) -> web.Response:
    return web.Response(text="<html>a login page</html>", content_type="text/html")


@pytest.fixture
async def prom() -> AsyncIterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus()
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", fake.handle)
    app.router.add_route("*", "/not-json/api/v1/query", not_json)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def settings(url: str, **extra: Any) -> PrometheusSettings:
    return PrometheusSettings(url=url, **extra)


async def test_vllm_preset_reads_depth_in_flight_wait_and_rate(
    prom: tuple[FakePrometheus, str],
) -> None:
    fake, url = prom
    s = settings(url, preset="vllm", selector='{model_name="llama"}', quantile=0.9)
    assert s.depth == 'sum(vllm:num_requests_waiting{model_name="llama"}) or vector(0)'
    completed = iter(["100", "130"])
    fake.answers = {
        s.depth: lambda: vector("7"),
        str(s.in_flight): lambda: vector("3"),
        str(s.wait): lambda: vector("2.5"),
        str(s.completed): lambda: vector(next(completed)),
    }
    assert s.wait == ("histogram_quantile(0.9, sum by (le) "
                      '(rate(vllm:request_queue_time_seconds_bucket{model_name="llama"}[1m])))')
    clock = ManualClock()
    sampler = PrometheusSource.make_sampler([("chat", s)], clock, 2.0)
    try:
        first = (await sampler.sample())["chat"]
        clock.advance(10)
        second = (await sampler.sample())["chat"]
    finally:
        await sampler.close()
    assert (first.depth, first.in_flight, first.oldest_wait_s, first.fresh) == (7, 3, 2.5, True)
    assert first.completion_rate is None and second.completion_rate == pytest.approx(3.0)
    assert {method for method, _, _ in fake.seen} == {"POST"}


async def test_nan_wait_is_unknown_and_an_empty_queue_waits_zero(
    prom: tuple[FakePrometheus, str],
) -> None:
    fake, url = prom
    s = settings(url, depth="q_depth", wait="q_wait", in_flight="q_busy")
    depth = ["4"]
    fake.answers = {"q_depth": lambda: vector(depth[0]), "q_wait": lambda: vector("NaN"),
                    "q_busy": lambda: vector()}
    sampler = PrometheusSource.make_sampler([("p", s)], ManualClock(), 2.0)
    try:
        busy = (await sampler.sample())["p"]
        depth[0] = "0"
        idle = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert busy.fresh and busy.depth == 4 and busy.oldest_wait_s is None  # NaN: unknown
    assert busy.in_flight is None  # no series for a non-depth query: unknown
    assert idle.fresh and idle.oldest_wait_s == 0.0


@pytest.mark.parametrize(("answer", "message"), [
    (None, "bad_data: 1:1: parse error"),
    (vector("1", "2"), "returned 2 series, expected one; aggregate it"),
    (vector(), "returned no series"),
    (vector("-Inf"), "not a count"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}},
     "expected an instant vector or scalar, got 'matrix'"),
    ({"status": "success", "data": {"resultType": "vector", "result": [{"value": "x"}]}},
     "not \\[time, value\\]"),
])
async def test_bad_answers_make_the_pool_stale_with_a_clear_error(
    prom: tuple[FakePrometheus, str], answer: Any, message: str,
) -> None:
    fake, url = prom
    good = {"d": lambda: vector("5")}
    fake.answers = dict(good)
    sampler = PrometheusSource.make_sampler([("p", settings(url, depth="d"))], ManualClock(), 2.0)
    try:
        ok = (await sampler.sample())["p"]
        if answer is None:
            fake.answers = {}
        else:
            fake.answers = {"d": lambda: answer}
        with capture_logs() as logs:
            stale = (await sampler.sample())["p"]
            await sampler.sample()  # the same failure again: not logged again
    finally:
        await sampler.close()
    assert ok.fresh and ok.depth == 5
    assert not stale.fresh and stale.depth == 5  # last known value, never a crash
    [failed] = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert failed["pool"] == "p" and failed["source"] == "prometheus"
    assert "depth query 'd'" in failed["queue"]
    assert re.search(message, failed["error"]), failed


async def test_pools_queries_are_batched_and_a_scalar_or_bad_query_goes_alone(
    prom: tuple[FakePrometheus, str],
) -> None:
    fake, url = prom
    fake.answers = {
        "a_depth": lambda: vector("1"), "a_busy": lambda: vector("2"),
        "b_depth": lambda: vector("3"),
        "scalar(c_depth)": lambda: {"status": "success",
                                    "data": {"resultType": "scalar", "result": [0, "4"]}},
    }
    pools = [("a", settings(url, depth="a_depth", in_flight="a_busy")),
             ("b", settings(url, depth="b_depth", wait="b_typo")),
             ("c", settings(url, depth="scalar(c_depth)"))]
    sampler = PrometheusSource.make_sampler(pools, ManualClock(), 2.0)
    try:
        first = await sampler.sample()
        first_requests = sampler.requests
        second = await sampler.sample()
    finally:
        await sampler.close()
    for obs in (first, second):
        assert (obs["a"].depth, obs["a"].in_flight) == (1, 2) and obs["a"].fresh
        assert obs["c"].fresh and obs["c"].depth == 4
        assert not obs["b"].fresh  # its wait query is rejected: only its own pool is stale
    assert sampler.solo == {"b_typo", "scalar(c_depth)"}
    # First round: the rejected batch, then each of its 5 queries alone. Then: one batch of
    # the three good vector queries plus the two solo ones.
    assert first_requests == 6 and sampler.requests - first_requests == 3


def test_parse_value_shapes() -> None:
    assert parse_value({"status": "success", "data": {"resultType": "scalar",
                                                      "result": [1.0, "2"]}}, "q") == 2.0
    assert parse_value(vector(), "q") is None
    nan = parse_value(vector("NaN"), "q")
    assert nan is not None and math.isnan(nan)


async def test_a_late_server_gives_stale_within_the_timeout_and_others_stay_fresh(
    prom: tuple[FakePrometheus, str],
) -> None:
    fake, url = prom
    fake.answers = {"a": lambda: vector("1"), "b": lambda: vector("2")}
    pools = [("a", settings(url, depth="a")), ("b", settings(url, depth="b"))]
    sampler = PrometheusSource.make_sampler(pools, ManualClock(), 0.3)
    try:
        await sampler.sample()
        fake.delay_s = 3.0
        started = time.monotonic()
        late = await sampler.sample()
        elapsed = time.monotonic() - started
    finally:
        fake.delay_s = 0
        await sampler.close()
    assert not late["a"].fresh and not late["b"].fresh
    assert (late["a"].depth, late["b"].depth) == (1, 2)
    assert elapsed < 2.0, f"the tick waited {elapsed:.2f} s for a server it gave 0.3 s"


async def test_unreachable_server_and_not_json(prom: tuple[FakePrometheus, str]) -> None:
    _fake, url = prom
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    pools = [("down", settings(f"http://127.0.0.1:{closed}", depth="d"))]
    sampler = PrometheusSource.make_sampler(pools, ManualClock(), 1.0)
    try:
        assert not (await sampler.sample())["down"].fresh
    finally:
        await sampler.close()
    sampler = PrometheusSource.make_sampler([("html", settings(url + "/not-json", depth="d"))],
                                            ManualClock(), 1.0)
    try:
        with pytest.raises(Exception, match="not JSON"):
            await sampler.query("d")
    finally:
        await sampler.close()


async def test_headers_and_basic_auth_are_sent(prom: tuple[FakePrometheus, str]) -> None:
    fake, url = prom
    fake.answers = {"d": lambda: vector("1")}
    authed = url.replace("http://", "http://reader:s3cret@")
    s = settings(authed, depth="d", headers={"X-Scope-OrgID": "team-a"})
    sampler = PrometheusSource.make_sampler([("p", s)], ManualClock(), 1.0)
    try:
        assert (await sampler.sample())["p"].fresh
    finally:
        await sampler.close()
    _, _, headers = fake.seen[-1]
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"].startswith("Basic ")
    assert "s3cret" not in sampler.describe(s)


CONFIG = """
pools:
  - name: chat
    queue:
      kind: prometheus
      url: {url}
{extra}
    sla: {{max_wait: 10s}}
    capacity: {{max: 2}}
    groups: [{{name: g, provider: local, command: ["true"]}}]
"""


@pytest.mark.parametrize(("extra", "line", "message"), [
    ("      preset: sglang", 7, "preset"),
    ("      depth: ''", 7, "must not be empty"),
    ("      selector: 'model=\"x\"'\n      preset: vllm", 7, "label matchers in braces"),
    ("      preset: vllm\n      window: 5 minutes", 8, "PromQL duration"),
    ("      in_flight: x", 5, "depth: a query is required"),
])
def test_config_errors_name_file_and_line(
    registries: dict[str, Registry[Any]], extra: str, line: int, message: str,
) -> None:
    text = CONFIG.format(url="http://prom:9090", extra=extra)
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text, "p.yaml", registries=registries)
    assert f"p.yaml:{line}:" in str(raised.value) and message in str(raised.value), raised.value


def test_config_rejects_bad_url_without_echoing_the_password(
    registries: dict[str, Registry[Any]],
) -> None:
    text = CONFIG.format(url="ftp://u:hunter2@prom", extra="      preset: tgi")
    with pytest.raises(ConfigFileError, match=r"p.yaml:6: .*http://") as raised:
        parse_config(text, "p.yaml", registries=registries)
    assert "hunter2" not in str(raised.value)
    config = parse_config(CONFIG.format(url="http://prom:9090/", extra="      preset: tgi"),
                          registries=registries)
    queue = config.pools[0].queue.settings
    assert isinstance(queue, PrometheusSettings)
    assert queue.url == "http://prom:9090" and queue.depth == "sum(tgi_queue_size) or vector(0)"


# ---------------------------------------------------------------- a real Prometheus

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def vllm_exporter() -> AsyncIterator[tuple[int, Any]]:
    """A vLLM-shaped /metrics endpoint on a free loopback port: prometheus-client's metrics in
    the text exposition format (the one vLLM serves; the OpenMetrics negotiation of newer
    clients rewrites ``:`` in names for old servers)."""
    from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    waiting = Gauge("vllm:num_requests_waiting", "waiting", ["model_name"], registry=registry)
    Gauge("vllm:num_requests_running", "running", ["model_name"],
          registry=registry).labels("llama").set(2)
    queue_time = Histogram("vllm:request_queue_time_seconds", "queue time", ["model_name"],
                           registry=registry, buckets=(0.5, 1, 2, 4, 8))
    waiting.labels("llama").set(11)
    waiting.labels("other").set(100)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], queue_time  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed (.ci/run "
                                               "installs it)")
async def test_against_a_real_prometheus_scraping_a_vllm_exporter(
    tmp_path: Path, vllm_exporter: tuple[int, Any],
) -> None:
    exporter_port, queue_time = vllm_exporter
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: vllm\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    s = settings(f"http://127.0.0.1:{port}", preset="vllm", selector='{model_name="llama"}',
                 window="10s")
    sampler = PrometheusSource.make_sampler([("chat", s)], ManualClock(), 2.0)
    try:
        obs = None
        rounds = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue_time.labels("llama").observe(1.5)  # keep the histogram's rate non-zero
            obs = (await sampler.sample())["chat"]
            rounds += 1
            if obs.fresh and obs.depth and obs.oldest_wait_s is not None:
                break
            await asyncio.sleep(0.5)
        assert obs is not None and obs.fresh, "Prometheus never answered"
        assert (obs.depth, obs.in_flight) == (11, 2)  # the selector kept 'other' out
        # The pool's 4 queries went as one batched request per round, which Prometheus took.
        assert sampler.solo == set() and sampler.requests == rounds
        assert obs.oldest_wait_s is not None and 1.0 < obs.oldest_wait_s <= 2.0
        # A typo in PromQL is Prometheus's own bad_data error, surfaced as a stale pool.
        with pytest.raises(Exception, match="bad_data"):
            await sampler.query("sum(vllm:num_requests_waiting")
    finally:
        await sampler.close()
        proc.terminate()
        proc.wait(10)



def test_a_missing_http_client_names_the_extra(
    registries: dict[str, Registry[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "autoscaler.sources.prometheus")
    text = CONFIG.format(url="http://prom:9090", extra="      preset: vllm")
    with pytest.raises(ConfigFileError, match=r"queue-autoscaler\[prometheus\]"):
        parse_config(text, "p.yaml", registries=registries)
