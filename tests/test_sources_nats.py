"""The ``nats-jetstream`` source against a real ``nats-server -js`` started on a free loopback
port (not the machine's 4222), through nats-py."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.registry import Registry
from autoscaler.runtime.clock import LoopClock
from autoscaler.sources.nats import NatsJetStreamSource
from autoscaler.sources.nats.settings import NatsSettings

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed "
                                                            "(.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    store = tmp_path_factory.mktemp("jetstream")
    proc = subprocess.Popen([str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("nats-server did not start")
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def make_stream(js: Any, *, direct: bool = False, filters: list[str] | None = None,
                      ) -> tuple[str, str, str]:
    """A stream ``s-<id>`` on ``<id>.>`` and a durable pull consumer ``workers``."""
    ident = uuid.uuid4().hex[:10]
    stream = f"s-{ident}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{ident}.>"], allow_direct=direct))
    config = ConsumerConfig(durable_name="workers", ack_policy="explicit", ack_wait=300)
    if filters:
        config.filter_subject = f"{ident}.{filters[0]}"
    await js.add_consumer(stream, config)
    return ident, stream, "workers"


@pytest.mark.parametrize("direct", [False, True])
async def test_pending_ack_pending_and_oldest_waiting_age(
    js: Any, nats_url: str, direct: bool,
) -> None:
    ident, stream, consumer = await make_stream(js, direct=direct)
    for i in range(6):
        await js.publish(f"{ident}.req", f"r{i}".encode())
        if i == 1:
            await asyncio.sleep(1.2)  # the first two are older than the rest
    sub = await js.pull_subscribe(f"{ident}.req", durable=consumer, stream=stream)
    taken = await sub.fetch(1)  # delivered, not acked: in flight
    assert len(taken) == 1
    sampler = NatsJetStreamSource.make_sampler(
        [("p", NatsSettings(url=nats_url, stream=stream, consumer=consumer))], LoopClock(), 2.0)
    try:
        obs = (await sampler.sample())["p"]
        await taken[0].ack_sync()  # acknowledged once the server confirms
        for msg in await sub.fetch(5):
            await msg.ack_sync()
        empty = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert obs.fresh and (obs.depth, obs.in_flight) == (5, 1)
    # The oldest WAITING message is r1 (r0 is in flight): published 1.2 s before the rest.
    assert obs.oldest_wait_s is not None and 1.0 <= obs.oldest_wait_s < 30
    assert empty.fresh and (empty.depth, empty.in_flight, empty.oldest_wait_s) == (0, 0, 0.0)


async def test_filtered_consumer_reads_its_own_subject(js: Any, nats_url: str) -> None:
    ident, stream, consumer = await make_stream(js, filters=["gpu"])
    await js.publish(f"{ident}.other", b"not ours, and older")
    await asyncio.sleep(1.2)
    await js.publish(f"{ident}.gpu", b"ours")
    sampler = NatsJetStreamSource.make_sampler(
        [("p", NatsSettings(url=nats_url, stream=stream, consumer=consumer))], LoopClock(), 2.0)
    try:
        obs = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert obs.depth == 1
    assert obs.oldest_wait_s is not None and obs.oldest_wait_s < 1.0  # not the older 'other'


async def test_missing_consumer_is_stale_and_named(js: Any, nats_url: str) -> None:
    _ident, stream, _consumer = await make_stream(js)
    sampler = NatsJetStreamSource.make_sampler(
        [("p", NatsSettings(url=nats_url, stream=stream, consumer="nobody"))], LoopClock(), 2.0)
    try:
        with capture_logs() as logs:
            obs = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert not obs.fresh
    [failed] = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert failed["pool"] == "p" and "consumer 'nobody'" in failed["queue"]
    assert "not found" in failed["error"]


async def test_server_down_is_stale_then_recovers(tmp_path: Path) -> None:
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    settings = NatsSettings(url=url, stream="jobs", consumer="workers")
    sampler = NatsJetStreamSource.make_sampler([("p", settings)], LoopClock(), 1.0)
    proc = None
    try:
        assert not (await sampler.sample())["p"].fresh  # nothing listens yet
        proc = subprocess.Popen([str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port),
                                 "-sd", str(tmp_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nc = None
        for _ in range(100):
            try:
                nc = await nats.connect(url, allow_reconnect=False, connect_timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.05)
        assert nc is not None
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="jobs", subjects=["jobs.>"]))
        await js.add_consumer("jobs", ConsumerConfig(durable_name="workers"))
        await js.publish("jobs.a", b"x")
        await nc.close()
        obs = (await sampler.sample())["p"]
        assert obs.fresh and obs.depth == 1
    finally:
        await sampler.close()
        if proc is not None:
            proc.terminate()
            proc.wait(10)


CONFIG = """
pools:
  - name: chat
    queue:
      kind: nats-jetstream
      url: {url}
      stream: {stream}
      consumer: workers
    sla: {{max_wait: 10s}}
    capacity: {{max: 2}}
    groups: [{{name: g, provider: local, command: ["true"]}}]
"""


@pytest.mark.parametrize(("url", "stream", "line", "message"), [
    ("http://127.0.0.1:4222", "jobs", 6, "nats://"),
    ("nats://u:hunter2@h:99999", "jobs", 6, "invalid NATS URL"),
    ("nats://127.0.0.1", "jobs.v1", 7, "not a JetStream name"),
])
def test_config_errors_name_file_and_line(
    registries: dict[str, Registry[Any]], url: str, stream: str, line: int, message: str,
) -> None:
    with pytest.raises(ConfigFileError) as raised:
        parse_config(CONFIG.format(url=url, stream=stream), "n.yaml", registries=registries)
    text = str(raised.value)
    assert f"n.yaml:{line}:" in text and message in text and "hunter2" not in text, text
