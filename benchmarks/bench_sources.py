"""How long one sampling round takes for the per-pool sources (prometheus, nats-jetstream,
rabbitmq, sqs) at 100 pools on one server each, against the real servers on this machine.

Each source's sampler asks once per pool, 32 pools at a time, so a round costs about
pools / 32 round trips of the slowest request. Prometheus: a real ``prometheus`` scraping a
vLLM-shaped exporter, the ``vllm`` preset (4 queries per pool). NATS: a private
``nats-server -js`` with 100 streams and consumers, 5 messages each (info + one message get per
pool). RabbitMQ: the broker on 127.0.0.1:5672, 100 queues of 5 messages (passive declare per
pool; with ``peek`` a get and a reject too). SQS: moto's server (in-process Python: its figure
is moto's cost, not AWS's). A source whose server is missing is skipped. Prints figures; asserts
nothing about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

POOLS = 100
ROUNDS = 20


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def _process(*argv: str) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


async def _time(make: Callable[[], Any], label: str) -> None:
    sampler = make()
    try:
        for _ in range(2):
            warm = await sampler.sample()
            stale = [p for p, o in warm.items() if not o.fresh]
            if stale:
                print(f"  {label}: warm-up left {len(stale)} pools stale; skipped")
                return
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            await sampler.sample()
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        await sampler.close()
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"  {label:<42} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")


@contextlib.asynccontextmanager
async def _exporter() -> AsyncIterator[int]:
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    waiting = Gauge("vllm:num_requests_waiting", "w", ["model_name"], registry=registry)
    running = Gauge("vllm:num_requests_running", "r", ["model_name"], registry=registry)
    hist = Histogram("vllm:request_queue_time_seconds", "q", ["model_name"], registry=registry)
    for i in range(POOLS):
        waiting.labels(f"m{i}").set(i)
        running.labels(f"m{i}").set(1)
        hist.labels(f"m{i}").observe(0.5)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def bench_prometheus(tmp: str) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        print("  prometheus: binary not installed; skipped")
        return
    from autoscaler.sources.prometheus import PrometheusSource
    from autoscaler.sources.prometheus.settings import PrometheusSettings

    async with _exporter() as exporter:
        port = _free_port()
        with open(f"{tmp}/prometheus.yml", "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: vllm\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{exporter}']}}]\n")
        with _process(binary, f"--config.file={tmp}/prometheus.yml",
                      f"--storage.tsdb.path={tmp}/prom", f"--web.listen-address=127.0.0.1:{port}"):
            _wait_port(port)
            await asyncio.sleep(3)  # a few scrapes
            pools: list[tuple[str, BaseModel]] = [
                (f"m{i}", PrometheusSettings(url=f"http://127.0.0.1:{port}", preset="vllm",
                                             selector=f'{{model_name="m{i}"}}'))
                for i in range(POOLS)]
            await _time(lambda: PrometheusSource.make_sampler(pools, SystemClock(), 5.0),
                        f"prometheus, {POOLS} pools x 4 queries")


async def bench_nats(tmp: str) -> None:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        print("  nats-jetstream: nats-server not installed; skipped")
        return
    import nats
    from nats.js.api import ConsumerConfig, StreamConfig

    from autoscaler.sources.nats import NatsJetStreamSource
    from autoscaler.sources.nats.settings import NatsSettings

    port = _free_port()
    with _process(binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", f"{tmp}/js"):
        _wait_port(port)
        url = f"nats://127.0.0.1:{port}"
        nc = await nats.connect(url)
        js = nc.jetstream()
        for i in range(POOLS):
            await js.add_stream(StreamConfig(name=f"s{i}", subjects=[f"s{i}.>"]))
            await js.add_consumer(f"s{i}", ConsumerConfig(durable_name="w"))
            for j in range(5):
                await js.publish(f"s{i}.job", str(j).encode())
        await nc.close()
        pools: list[tuple[str, BaseModel]] = [
            (f"s{i}", NatsSettings(url=url, stream=f"s{i}", consumer="w")) for i in range(POOLS)]
        await _time(lambda: NatsJetStreamSource.make_sampler(pools, SystemClock(), 5.0),
                    f"nats-jetstream, {POOLS} consumers")


async def bench_rabbitmq() -> None:
    try:
        import aiormq
        from pamqp.commands import Basic

        connection = await aiormq.connect("amqp://guest:guest@127.0.0.1:5672/")
    except Exception as exc:
        print(f"  rabbitmq: no broker on 127.0.0.1:5672 ({exc}); skipped")
        return
    from autoscaler.sources.rabbitmq import RabbitMqSource
    from autoscaler.sources.rabbitmq.settings import RabbitMqSettings

    channel = await connection.channel()
    names = [f"autoscaler-bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(POOLS)]
    try:
        for name in names:
            await channel.queue_declare(name)
            for _ in range(5):
                await channel.basic_publish(b"x", routing_key=name, properties=Basic.Properties(
                    timestamp=datetime.now(UTC)))
        url = "amqp://guest:guest@127.0.0.1:5672/"
        for age in ("none", "peek"):
            pools: list[tuple[str, BaseModel]] = [
                (n, RabbitMqSettings(url=url, queue=n, age=age)) for n in names]
            await _time(lambda p=pools: RabbitMqSource.make_sampler(p, SystemClock(), 5.0),
                        f"rabbitmq AMQP age={age}, {POOLS} queues")
    finally:
        for name in names:
            await channel.queue_delete(name)
        await connection.close()


async def bench_sqs() -> None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("  sqs: moto not installed; skipped")
        return
    from autoscaler.sources.sqs import SqsSource
    from autoscaler.sources.sqs.settings import SqsSettings

    for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ.setdefault(key, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per SQS call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        pools: list[tuple[str, BaseModel]] = []
        for i in range(POOLS):
            queue_url = client.create_queue(QueueName=f"bench-{i}")["QueueUrl"]
            for _ in range(5):
                client.send_message(QueueUrl=queue_url, MessageBody="x")
            pools.append((f"q{i}", SqsSettings(queue_url=queue_url, region="us-east-1",
                                               endpoint_url=endpoint, age="peek")))
        await _time(lambda: SqsSource.make_sampler(pools, SystemClock(), 10.0),
                    f"sqs on moto age=peek, {POOLS} queues")
    finally:
        server.stop()


async def _all(steps: list[Callable[[], Awaitable[None]]]) -> None:
    for step in steps:
        await step()


def main() -> None:
    print(f"one sampling round of {POOLS} pools per source, {ROUNDS} rounds after 2 warm-ups")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_all([lambda: bench_prometheus(tmp), lambda: bench_nats(tmp),
                          bench_rabbitmq, bench_sqs]))


if __name__ == "__main__":
    main()
