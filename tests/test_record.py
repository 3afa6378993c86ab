"""``autoscaler run --record DIR``: a real daemon on the real redis-server records what it saw,
and ``autoscaler simulate`` replays the recording."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from autoscaler.core.model import Observation
from autoscaler.runtime.loop import PoolTick
from autoscaler.runtime.recorder import TraceRecorder
from autoscaler.testing import free_port

KEY = "rec:chat"
RATE = 40.0  # requests per second pushed while recording

CONFIG = """
controller:
  interval: 250ms
  metrics_address: "127.0.0.1:{port}"
  drain_timeout: 5s
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "{key}"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 4, slots_per_instance: 2, boot_time: 1s}}
    policy: {{kind: threshold}}
    groups:
      - name: local
        provider: local
        output: discard
        command: ["true"]
"""


def cli() -> list[str]:
    script = Path(sys.executable).with_name("autoscaler")
    return [str(script)] if script.exists() else [sys.executable, "-m", "autoscaler"]


async def test_a_real_daemon_records_a_rate_series_that_simulate_replays(
    redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "autoscaler.yaml"
    config.write_text(CONFIG.format(port=free_port(), url=redis_url, key=KEY))
    record = tmp_path / "recorded"
    client = aioredis.Redis.from_url(redis_url)
    await client.set(f"{KEY}:enqueued", 0)  # a counter from the first tick: nothing unmeasured
    log = (tmp_path / "daemon.log").open("w")  # a file, not a pipe nobody drains meanwhile
    daemon = await asyncio.create_subprocess_exec(
        *cli(), "run", "-c", str(config), "--dry-run", "--record", str(record),
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )
    try:
        # Push only once the daemon has ticked and recorded (a first reading before any
        # request), however slowly it started: what it saw before then is not in the trace.
        for _ in range(600):
            files = list((record / "chat").glob("observations-*.csv"))
            if files and files[0].read_text().count("\n") >= 3:
                break
            assert daemon.returncode is None
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the daemon recorded nothing in 30 s")
        end = time.monotonic() + 4.0
        sent = 0
        started = time.monotonic()
        while time.monotonic() < end:  # a steady RATE, in 50 ms batches
            due = int((time.monotonic() - started) * RATE) - sent
            if due > 0:
                payload = json.dumps({"enqueued_at": time.time()})
                async with client.pipeline(transaction=True) as pipe:
                    pipe.lpush(KEY, *([payload] * due))
                    pipe.incrby(f"{KEY}:enqueued", due)
                    await pipe.execute()
                sent += due
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # several more ticks: the last pushes are measured too
    finally:
        await client.aclose()
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), 30)
        log.close()
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()[-2000:]

    rates = list((record / "chat").glob("rate-*.csv"))
    observed = list((record / "chat").glob("observations-*.csv"))
    assert len(rates) == 1 and len(observed) == 1
    rows = list(csv.DictReader(rates[0].open()))
    assert len(rows) >= 10
    t = [float(r["t_s"]) for r in rows]
    assert t == sorted(t) and len(set(t)) == len(t)
    busy = [float(r["rate_rps"]) for r in rows if float(r["rate_rps"]) > 0]
    # The recorded rate integrates to what was pushed (each row holds until the next).
    pushed = sum(float(rows[i]["rate_rps"]) * (t[i + 1] - t[i]) for i in range(len(rows) - 1))
    assert pushed == pytest.approx(sent, rel=0.1)
    assert sorted(busy)[len(busy) // 2] == pytest.approx(RATE, rel=0.5)
    ticks = list(csv.DictReader(observed[0].open()))
    assert {r["rate_source"] for r in ticks} <= {"counter", ""}
    assert max(int(r["depth"]) for r in ticks) > 0  # nobody served: the queue only grew
    assert all(r["desired"] for r in ticks if r["fresh"] == "1")

    replay = subprocess.run(
        [*cli(), "simulate", "-c", str(config), "--trace", str(rates[0])],
        capture_output=True, text=True, timeout=120,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "chat" in replay.stdout


def obs(time_s: float, depth: int, in_flight: int | None, arrivals: float | None,
        completions: float | None, fresh: bool = True) -> Observation:
    return Observation(time=time_s, depth=depth, oldest_wait_s=0.0, in_flight=in_flight,
                       arrival_rate=arrivals, completion_rate=completions, fresh=fresh)


def test_a_source_without_an_arrival_counter_gets_a_conservation_estimate(
    tmp_path: Path
) -> None:
    recorder = TraceRecorder(tmp_path)
    recorder.on_tick([PoolTick("p", obs(10.0, 5, 2, None, None), None)])
    recorder.on_tick([PoolTick("p", obs(11.0, 8, 2, None, 4.0), None)])  # +3 held, 4 served
    recorder.on_tick([PoolTick("p", obs(12.0, 8, 2, None, None, fresh=False), None)])
    recorder.on_tick([PoolTick("p", obs(13.0, 6, 2, None, 1.0), None)])  # no fresh previous
    recorder.on_tick([PoolTick("p", obs(14.0, 6, 3, None, 2.0), None)])  # +1 held, 2 served
    recorder.close()
    rows = list(csv.DictReader(next(tmp_path.glob("p/rate-*.csv")).open()))
    assert [(r["t_s"], float(r["rate_rps"])) for r in rows] == [("0.000", 7.0), ("3.000", 3.0)]
    sources = [r["rate_source"] for r in csv.DictReader(next(tmp_path.glob("p/obs*.csv")).open())]
    assert sources == ["", "estimated", "", "", "estimated"]


def test_rotation_starts_a_segment_that_replays_on_its_own(tmp_path: Path) -> None:
    recorder = TraceRecorder(tmp_path, rotate_s=3.0)
    for i in range(5):
        recorder.on_tick([PoolTick("p", obs(100.0 + i, 0, 0, 1.0 + i, 0.0), None)])
        time.sleep(1.1 if i == 2 else 0)  # a new wall-clock second names the second segment
    recorder.close()
    segments = sorted(tmp_path.glob("p/rate-*.csv"))
    assert len(segments) == 2
    first, second = ([(r["t_s"], r["rate_rps"]) for r in csv.DictReader(s.open())]
                     for s in segments)
    assert first == [("0.000", "2"), ("1.000", "3")]  # the rate over [100, 101] holds from 0
    assert second == [("0.000", "5")]  # the new segment restarts at 0 (at 103)


def test_a_stalled_writer_drops_ticks_instead_of_blocking_the_loop(tmp_path: Path) -> None:
    import threading

    recorder = TraceRecorder(tmp_path, max_queued_ticks=1)
    disk = threading.Event()
    write = recorder._write
    recorder._write = lambda row: (disk.wait(10), write(row))  # type: ignore[method-assign]
    started = time.monotonic()
    for i in range(50):  # one is being written (stalled), one queued, the rest dropped
        recorder.on_tick([PoolTick("p", obs(float(i), 0, 0, 1.0, 1.0), None)])
    assert time.monotonic() - started < 5.0  # a blocked put would wait out the 10 s stall
    assert 48 <= recorder.dropped <= 49
    disk.set()
    recorder.close()
    assert next(tmp_path.glob("p/observations-*.csv")).read_text().count("\n") >= 2
