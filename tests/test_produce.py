"""``autoscaler produce`` against the session's real redis-server: each kind's producer
convention, the seeded Poisson arrivals and service times, a real ``autoscaler worker`` serving
what it produced, a clean stop on SIGTERM, and plain errors for bad or unreachable URLs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import redis
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.emulator.loadgen import BurstPattern
from autoscaler.testing import free_port


def produce(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", "produce", *args],
                          capture_output=True, text=True, timeout=60)


def expected_service(rate: float, mean: float, seed: int, n: int) -> list[float]:
    pattern = BurstPattern(base_rate=rate, burst_rate=rate, mean_service_s=mean)
    return [round(s, 4) for _t, s in itertools.islice(pattern.arrivals(float("inf"), seed), n)]


def test_redis_list_payloads_follow_the_convention_and_the_seed(redis_url: str) -> None:
    before = time.time()
    result = CliRunner().invoke(main, ["produce", "--url", redis_url, "--kind", "redis-list",
                                       "--key", "q:chat", "--rate", "400", "--count", "40",
                                       "--service-time", "0.05", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent 40 requests to redis-list q:chat in ")
    client = redis.Redis.from_url(redis_url)
    assert client.llen("q:chat") == 40
    assert int(client.get("q:chat:enqueued") or 0) == 40
    oldest_first = [json.loads(raw) for raw in reversed(client.lrange("q:chat", 0, -1))]
    times = [p["enqueued_at"] for p in oldest_first]
    assert times == sorted(times) and before <= times[0] and times[-1] <= time.time()
    assert [p["service_s"] for p in oldest_first] == expected_service(400, 0.05, 3, 40)
    assert len({p["id"] for p in oldest_first}) == 40
    client.close()


def test_redis_zset_fixed_service_scores_are_enqueue_times(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["produce", "--url", redis_url, "--kind", "redis-zset",
                                       "--key", "q:batch", "--rate", "500", "--count", "30",
                                       "--service-time", "0.02", "--fixed-service"])
    assert result.exit_code == 0, result.output
    client = redis.Redis.from_url(redis_url)
    members = client.zrange("q:batch", 0, -1, withscores=True)
    assert len(members) == 30
    assert int(client.get("q:batch:enqueued") or 0) == 30
    for raw, score in members:
        payload = json.loads(raw)
        assert payload["enqueued_at"] == score
        assert payload["service_s"] == 0.02
    client.close()


def test_a_real_worker_serves_what_produce_put_on_a_stream(redis_url: str) -> None:
    result = produce("--url", redis_url, "--kind", "redis-stream", "--key", "q:s",
                     "--rate", "200", "--count", "20", "--service-time", "0.01")
    assert result.returncode == 0, result.stderr
    client = redis.Redis.from_url(redis_url)
    assert client.xlen("q:s") == 20
    worker = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "worker", "--kind", "redis-stream", "--key", "q:s",
         "--group", "g", "--slots", "4", "--service-time", "5"],
        env={**os.environ, "AUTOSCALER_QUEUE_URL": redis_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and int(client.get("q:s:completed") or 0) < 20:
            time.sleep(0.05)
        # 20 requests of ~0.01 s on 4 slots: done long before one 5 s default service time
        assert int(client.get("q:s:completed") or 0) == 20
        worker.send_signal(signal.SIGTERM)
        _out, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, stderr
    client.close()


def test_sigterm_stops_an_open_ended_run_with_its_summary(redis_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "produce", "--url", redis_url,
                             "--kind", "redis-list", "--key", "q:open", "--rate", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.llen("q:open") < 5:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    sent = int(out.split()[1])
    assert sent >= 5 and sent == client.llen("q:open")
    client.close()


def test_bad_and_unreachable_urls_are_plain_errors() -> None:
    bad = produce("--url", "http://x", "--kind", "redis-list", "--key", "k", "--rate", "1")
    assert bad.returncode == 2 and "--url" in bad.stderr and "Traceback" not in bad.stderr
    down = produce("--url", f"redis://:hunter2@127.0.0.1:{free_port()}/0", "--kind",
                   "redis-list", "--key", "k", "--rate", "100", "--count", "1")
    assert down.returncode == 1, down.stderr
    assert down.stderr.startswith("error: ") and "Traceback" not in down.stderr
    assert "hunter2" not in down.stderr
