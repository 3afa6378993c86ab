"""Side by side: this checkout's RedisSampler against another revision's, in ONE run.

    .venv/bin/python -m benchmarks.compare_sampling ab03cbd [ROUNDS]

Extracts that revision's ``sources/redis/probe.py`` and ``sampler.py`` (``git show``) into a
temporary package, fills the 1000 queues of ``bench_sampling`` on one private redis-server and
alternates rounds of both samplers, so load from other users of the machine slows both alike.
Prints per sampler: wall time of ``sample()`` (median, min, p95), the probe's time inside Redis
(``INFO commandstats``) and CPU per round of redis-server (``INFO cpu``) and of this process
(``time.process_time``); CPU is the figure load does not inflate. Works for revisions whose
sampler imports its probe as ``autoscaler.sources.redis.probe`` (ab03cbd and later). Not part
of ``make bench`` (it needs git history).
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.bench_sampling import SystemClock, fill, redis_server

REPO = Path(__file__).resolve().parent.parent


def old_sampler(revision: str, into: Path) -> Any:
    """The ``RedisSampler`` class of ``revision``, importable under a private package name."""
    package = into / "sampler_at_revision"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("probe", "sampler"):
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:autoscaler/sources/redis/{name}.py"],
            check=True, capture_output=True, text=True,
        ).stdout
        text = text.replace("from autoscaler.sources.redis.probe import",
                            "from sampler_at_revision.probe import")
        (package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(into))
    return importlib.import_module("sampler_at_revision.sampler").RedisSampler


def _usec(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0})
    return float(stats["usec"])


def _cpu_ms(client: redis.Redis) -> float:
    info = client.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1000.0


async def compare(url: str, samplers: dict[str, Any], rounds: int) -> None:
    client = redis.Redis.from_url(url)
    wall: dict[str, list[float]] = {k: [] for k in samplers}
    inside: dict[str, list[float]] = {k: [] for k in samplers}
    server_cpu: dict[str, list[float]] = {k: [] for k in samplers}
    own_cpu: dict[str, list[float]] = {k: [] for k in samplers}
    for sampler in samplers.values():
        for _ in range(3):
            if not all(o.fresh for o in (await sampler.sample()).values()):
                raise SystemExit("warm-up round failed: see the queue_sample_failed warning")
    names = list(samplers)
    for i in range(rounds):
        for name in names[i % 2 :] + names[: i % 2]:  # alternate who goes first
            usec, cpu, own = _usec(client), _cpu_ms(client), time.process_time()
            start = time.perf_counter()
            await samplers[name].sample()
            wall[name].append((time.perf_counter() - start) * 1000.0)
            own_cpu[name].append((time.process_time() - own) * 1000.0)
            inside[name].append((_usec(client) - usec) / 1000.0)
            server_cpu[name].append(_cpu_ms(client) - cpu)
    client.close()
    for name, sampler in samplers.items():
        await sampler.close()
        times = sorted(wall[name])
        print(f"{name:>10}: sample() median {statistics.median(times):.2f} ms, min "
              f"{times[0]:.2f}, p95 {times[int(0.95 * (len(times) - 1))]:.2f} | probe in Redis "
              f"median {statistics.median(inside[name]):.2f} ms | CPU per round: redis-server "
              f"{statistics.median(server_cpu[name]):.2f} ms, sampler process "
              f"{statistics.median(own_cpu[name]):.2f} ms")


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    revision, rounds = argv[0], int(argv[1]) if len(argv) > 1 else 100
    from autoscaler.sources.redis.sampler import RedisSampler

    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        Old = old_sampler(revision, Path(tmp))
        pools = fill(url)
        print(f"1000 queues, {rounds} alternating rounds each: {revision} vs this checkout")
        asyncio.run(compare(url, {
            revision: Old(pools, SystemClock(), 5.0),
            "this": RedisSampler(pools, SystemClock(), 5.0),
        }, rounds))


if __name__ == "__main__":
    main(sys.argv[1:])
