"""The ``rabbitmq`` source against the machine's RabbitMQ (127.0.0.1:5672, guest/guest; ``.ci/run``
starts it) over AMQP with unique queue names, and its management-API path against a local HTTP
server answering ``GET /api/queues/<vhost>/<queue>`` in the plugin's published shape."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiohttp import web
from pamqp.commands import Basic
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.clock import ManualClock
from autoscaler.registry import Registry
from autoscaler.runtime.clock import LoopClock
from autoscaler.sources.rabbitmq import RabbitMqSource
from autoscaler.sources.rabbitmq.settings import RabbitMqSettings

AMQP_URL = os.environ.get("AUTOSCALER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _broker_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=0.5).close()
        return True
    except OSError:
        return False


amqp = pytest.mark.skipif(not _broker_up() and not os.environ.get("CI"),
                          reason="no RabbitMQ on 127.0.0.1:5672 (.ci/run starts one)")


@pytest.fixture
async def channel() -> AsyncIterator[Any]:
    connection = await aiormq.connect(AMQP_URL)
    ch = await connection.channel()
    yield ch
    await connection.close()


@pytest.fixture
async def queue(channel: Any) -> AsyncIterator[str]:
    name = f"autoscaler-test-{uuid.uuid4().hex[:12]}"
    await channel.queue_declare(name, auto_delete=False)
    yield name
    await channel.queue_delete(name)


async def settle(channel: Any, queue: str, ready: int) -> None:
    """Wait (bounded) until the broker counts ``ready`` messages: a requeue after a peek, or a
    delivery to a consumer, happens asynchronously in the broker."""
    deadline = time.monotonic() + 10
    while (await channel.queue_declare(queue, passive=True)).message_count != ready:
        assert time.monotonic() < deadline, f"{queue} never had {ready} ready messages"
        await asyncio.sleep(0.02)


async def publish(channel: Any, queue: str, body: bytes, **properties: Any) -> None:
    await channel.basic_publish(body, routing_key=queue,
                                properties=Basic.Properties(**properties))


@amqp
async def test_amqp_ready_consumers_and_peeked_head_age(channel: Any, queue: str) -> None:
    sent_at = datetime.fromtimestamp(int(time.time()) - 30, UTC)  # AMQP: whole seconds
    await publish(channel, queue, b"oldest", timestamp=sent_at)
    await publish(channel, queue, b"newer", timestamp=datetime.now(UTC))
    settings = RabbitMqSettings(url=AMQP_URL, queue=queue, age="peek")
    sampler = RabbitMqSource.make_sampler([("p", settings)], LoopClock(), 2.0)
    try:
        obs = (await sampler.sample())["p"]
        await settle(channel, queue, 2)  # the broker requeues the peeked head asynchronously
        again = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert obs.fresh and obs.in_flight is None  # AMQP has no unacked count
    assert obs.oldest_wait_s is not None and 29.0 <= obs.oldest_wait_s < 40
    assert again.oldest_wait_s is not None and again.oldest_wait_s >= 29.0  # head requeued
    assert obs.depth == again.depth == 2


@amqp
async def test_amqp_consumers_and_the_timestamp_in_ms_header(channel: Any, queue: str) -> None:
    consumer = await channel.connection.channel()
    await consumer.basic_qos(prefetch_count=1)
    await consumer.basic_consume(queue, lambda _m: asyncio.sleep(0), no_ack=False)
    await publish(channel, queue, b"taken by the consumer", timestamp=datetime.now(UTC))
    await publish(channel, queue, b"head", timestamp=datetime.fromtimestamp(1, UTC),
                  headers={"timestamp_in_ms": int((time.time() - 5) * 1000)})
    await publish(channel, queue, b"tail")
    await settle(channel, queue, 2)  # the broker delivers the first to the consumer
    sampler = RabbitMqSource.make_sampler(
        [("p", RabbitMqSettings(url=AMQP_URL, queue=queue, age="peek"))], LoopClock(), 2.0)
    try:
        obs = (await sampler.sample())["p"]
    finally:
        await sampler.close()
        await consumer.close()
    assert obs.depth == 2 and sampler.consumers["p"] == 1
    assert obs.oldest_wait_s is not None and 4.5 <= obs.oldest_wait_s < 15  # the ms header


@amqp
async def test_amqp_peek_keeps_the_head_and_order(channel: Any, queue: str) -> None:
    for i in range(3):
        await publish(channel, queue, f"m{i}".encode(), timestamp=datetime.now(UTC))
    sampler = RabbitMqSource.make_sampler(
        [("p", RabbitMqSettings(url=AMQP_URL, queue=queue, age="peek"))], LoopClock(), 2.0)
    try:
        for _ in range(3):
            obs = (await sampler.sample())["p"]
            assert obs.depth == 3
            await settle(channel, queue, 3)  # the broker requeues the peeked head asynchronously
    finally:
        await sampler.close()
    bodies = []
    for _ in range(3):
        message = await channel.basic_get(queue, no_ack=True)
        bodies.append(message.body)
    assert bodies == [b"m0", b"m1", b"m2"]  # nothing lost, the head still first


@amqp
async def test_amqp_without_peek_the_wait_is_unknown_unless_empty(
    channel: Any, queue: str,
) -> None:
    sampler = RabbitMqSource.make_sampler(
        [("p", RabbitMqSettings(url=AMQP_URL, queue=queue))], LoopClock(), 2.0)
    try:
        empty = (await sampler.sample())["p"]
        await publish(channel, queue, b"x", timestamp=datetime.now(UTC))
        busy = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert (empty.depth, empty.oldest_wait_s) == (0, 0.0)
    assert (busy.depth, busy.oldest_wait_s) == (1, None)


@amqp
async def test_a_missing_queue_is_stale_and_does_not_break_other_pools(
    channel: Any, queue: str,
) -> None:
    await publish(channel, queue, b"x")
    pools = [("gone", RabbitMqSettings(url=AMQP_URL, queue=f"missing-{uuid.uuid4().hex}")),
             ("ok", RabbitMqSettings(url=AMQP_URL, queue=queue))]
    sampler = RabbitMqSource.make_sampler(pools, LoopClock(), 2.0)
    try:
        with capture_logs() as logs:
            first = await sampler.sample()
            second = await sampler.sample()
    finally:
        await sampler.close()
    assert not first["gone"].fresh and not second["gone"].fresh
    assert first["ok"].fresh and second["ok"].fresh and second["ok"].depth == 1
    [failed] = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert failed["pool"] == "gone" and "not found in vhost '/'" in failed["error"]
    assert "guest:***@" in failed["queue"] and "guest:guest" not in failed["queue"]


async def test_an_unreachable_broker_is_stale() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = RabbitMqSettings(url=f"amqp://guest:guest@127.0.0.1:{port}/", queue="q")
    sampler = RabbitMqSource.make_sampler([("p", settings)], LoopClock(), 1.0)
    try:
        assert not (await sampler.sample())["p"].fresh
    finally:
        await sampler.close()


# --------------------------------------------------------------- management API


class FakeManagement:
    """``GET /api/queues/{vhost}/{name}`` as the management plugin answers it."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], dict[str, Any]] = {}
        self.auth: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        key = (request.match_info["vhost"], request.match_info["name"])
        if key not in self.queues:
            return web.json_response({"error": "Object Not Found", "reason": "Not Found"},
                                     status=404)
        return web.json_response(self.queues[key])


@pytest.fixture
async def management() -> AsyncIterator[tuple[FakeManagement, str]]:
    fake = FakeManagement()
    app = web.Application()
    app.router.add_get("/api/queues/{vhost}/{name}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


def queue_json(ready: int, unacked: int, head: float | None, publish: int, ack: int,
               ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "jobs", "vhost": "team a", "messages": ready + unacked,
        "messages_ready": ready, "messages_unacknowledged": unacked, "consumers": 4,
        "message_stats": {"publish": publish, "ack": ack, "deliver_get": ack + unacked},
    }
    if head is not None:
        body["head_message_timestamp"] = head
    return body


async def test_management_reads_unacked_head_age_and_rates(
    management: tuple[FakeManagement, str],
) -> None:
    fake, url = management
    clock = ManualClock(wall_offset=time.time())
    fake.queues[("team a", "jobs")] = queue_json(7, 3, clock.wall() - 12, 100, 90)
    settings = RabbitMqSettings(url="amqp://svc:pa%2Fss@rabbit/team%20a", queue="jobs",
                                management_url=url)
    assert settings.vhost == "team a" and settings.age == "management"
    sampler = RabbitMqSource.make_sampler([("p", settings)], clock, 2.0)
    try:
        first = (await sampler.sample())["p"]
        clock.advance(10)
        fake.queues[("team a", "jobs")] = queue_json(0, 2, None, 150, 130)
        second = (await sampler.sample())["p"]
    finally:
        await sampler.close()
    assert (first.depth, first.in_flight, first.oldest_wait_s) == (7, 3, 12.0)
    assert second.oldest_wait_s == 0.0  # empty: nobody waits
    assert second.in_flight == 2
    assert second.arrival_rate == pytest.approx(5.0)
    assert second.completion_rate == pytest.approx(4.0)
    assert sampler.consumers["p"] == 4
    assert fake.auth[0].startswith("Basic ")  # the AMQP URL's user and password
    assert base64.b64decode(fake.auth[0].split()[1]) == b"svc:pa/ss"


async def test_management_head_unknown_and_errors(
    management: tuple[FakeManagement, str],
) -> None:
    fake, url = management
    fake.queues[("/", "q")] = queue_json(2, 0, None, 1, 1)
    pools = [("p", RabbitMqSettings(url="amqp://rabbit/", queue="q", management_url=url)),
             ("x", RabbitMqSettings(url="amqp://rabbit/", queue="x", management_url=url))]
    sampler = RabbitMqSource.make_sampler(pools, ManualClock(), 2.0)
    try:
        with capture_logs() as logs:
            obs = await sampler.sample()
    finally:
        await sampler.close()
    assert obs["p"].fresh and obs["p"].depth == 2 and obs["p"].oldest_wait_s is None
    assert not obs["x"].fresh
    [failed] = [e for e in logs if e["event"] == "queue_sample_failed"]
    assert failed["pool"] == "x" and "HTTP 404: Not Found" in failed["error"]


# ------------------------------------------- a private broker with the management plugin

RABBITMQ_SERVER = shutil.which("rabbitmq-server") or (
    "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None)
CAN_RUN_BROKER = RABBITMQ_SERVER is not None and os.geteuid() == 0  # the wrapper runs it as
# the rabbitmq user; only root (or that user) may start it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def management_broker() -> Iterator[tuple[str, str]]:
    """A private RabbitMQ node with ``rabbitmq_management`` on free loopback ports, apart from
    the machine's broker (whose plugins we leave alone): ``(amqp_url, management_url)``. Its
    files live in a directory of its own under /tmp (pytest's are private to root, and the
    node runs as the rabbitmq user)."""
    base = Path(tempfile.mkdtemp(prefix="autoscaler-rabbitmq-"))
    try:
        yield from _run_node(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_node(base: Path) -> Iterator[tuple[str, str]]:
    amqp_port, http_port, dist_port = _free_port(), _free_port(), _free_port()
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\nmanagement.tcp.ip = 127.0.0.1\n"
        f"management.tcp.port = {http_port}\nloopback_users = none\n"
        "collect_statistics_interval = 500\n")
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    shutil.chown(base, "rabbitmq", "rabbitmq")
    for child in base.iterdir():
        shutil.chown(child, "rabbitmq", "rabbitmq")
    node = f"autoscaler-test-{os.getpid()}@localhost"
    env = {**os.environ, "PATH": f"/usr/sbin:{os.environ.get('PATH', '')}",
           "RABBITMQ_NODENAME": node, "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_PID_FILE": str(base / "pid"), "RABBITMQ_DIST_PORT": str(dist_port),
           "ERL_EPMD_ADDRESS": "127.0.0.1",
           "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
    with open(base / "server.out", "wb") as out:
        subprocess.Popen([str(RABBITMQ_SERVER)], env=env, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    ctl = ["rabbitmqctl", "-n", node]
    try:
        deadline = time.monotonic() + 60
        while True:  # await_startup answers at once while the node is not registered yet
            started = subprocess.run([*ctl, "await_startup"], env=env, timeout=120,
                                     capture_output=True)
            if started.returncode == 0:
                break
            if time.monotonic() > deadline:
                output = (base / "server.out").read_bytes()[-1500:]
                pytest.fail(f"the private RabbitMQ node did not start: {output!r}")
            time.sleep(0.5)
        yield (f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
               f"http://127.0.0.1:{http_port}")
    finally:
        subprocess.run([*ctl, "shutdown"], env=env, timeout=120, capture_output=True)


@pytest.mark.skipif(not CAN_RUN_BROKER, reason="needs rabbitmq-server and root to start a "
                                               "private node")
async def test_a_real_management_api_gives_unacked_head_age_and_rates(
    management_broker: tuple[str, str],
) -> None:
    amqp_url, management_url = management_broker
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.queue_declare("jobs")
    sent = int(time.time()) - 20
    await publish(channel, "jobs", b"served", timestamp=datetime.fromtimestamp(sent, UTC))
    for _ in range(3):
        await publish(channel, "jobs", b"waiting", timestamp=datetime.now(UTC))
    consumer = await connection.channel()
    await consumer.basic_qos(prefetch_count=1)
    await consumer.basic_consume("jobs", lambda _m: asyncio.sleep(0))
    settings = RabbitMqSettings(url=amqp_url, queue="jobs", management_url=management_url)
    sampler = RabbitMqSource.make_sampler([("p", settings)], LoopClock(), 2.0)
    try:
        obs = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the plugin collects statistics periodically
            obs = (await sampler.sample())["p"]
            if obs.fresh and (obs.depth, obs.in_flight) == (3, 1):
                break
            await asyncio.sleep(0.25)
        assert obs is not None and obs.fresh and (obs.depth, obs.in_flight) == (3, 1)
        assert sampler.consumers["p"] == 1
        # RabbitMQ's head timestamp is the oldest message not yet acknowledged, in flight
        # ones included (measured on 3.10): the README says so.
        assert obs.oldest_wait_s is not None and 19.0 <= obs.oldest_wait_s < 40
    finally:
        await sampler.close()
        await connection.close()


CONFIG = """
pools:
  - name: chat
    queue:
      kind: rabbitmq
      url: {url}
      queue: jobs
{extra}
    sla: {{max_wait: 10s}}
    capacity: {{max: 2}}
    groups: [{{name: g, provider: local, command: ["true"]}}]
"""


@pytest.mark.parametrize(("url", "extra", "line", "message"), [
    ("http://u:hunter2@rabbit", "", 6, "amqp://"),
    ("amqp://u:hunter2@rabbit", "      age: management", 5, "needs management_url"),
    ("amqp://u:hunter2@rabbit", "      management_url: rabbit:15672", 8, "http://"),
    ("amqp://u:hunter2@rabbit", "      age: always", 8, "age"),
])
def test_config_errors_name_file_and_line(
    registries: dict[str, Registry[Any]], url: str, extra: str, line: int, message: str,
) -> None:
    with pytest.raises(ConfigFileError) as raised:
        parse_config(CONFIG.format(url=url, extra=extra), "r.yaml", registries=registries)
    text = str(raised.value)
    assert f"r.yaml:{line}:" in text and message in text and "hunter2" not in text, text
