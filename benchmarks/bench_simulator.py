"""Simulator throughput: a million-request trace, the whole process, side by side with SimPy.

Fleet: Poisson arrivals at 2,000 req/s for 500 s (1,000,000 requests), exponential service
with a 1 s mean, 260 instances x 8 slots, controller ticking every 5 s. Figures are printed,
never asserted. The whole ``autoscaler simulate --json`` process (interpreter start, imports,
config, trace load, simulation, JSON; bytecode cached, after one discarded warm-up run) and the
lean SimPy model of the same fleet on the same trace (``simpy_fleet``) run interleaved in
rounds, so a noisy shared machine slows both alike; the ratio is of their medians, in wall
time and in CPU time (user + system: less sensitive to other load). Also printed: in-process
load + simulate, the import time of one whole run (``python -X importtime``, top-level
modules), and the largest difference between SimPy's waits and the kernel's.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE, SPAN, MEAN, INSTANCES, SLOTS = 2000.0, 500.0, 1.0, 260, 8

CONFIG = f"""
controller: {{interval: 5s}}
pools:
  - name: bench
    queue: {{kind: memory}}
    sla: {{max_wait: 2s, target: 0.99}}
    capacity: {{min: {INSTANCES}, max: {INSTANCES}, slots_per_instance: {SLOTS}, boot_time: 0s}}
    policy: {{kind: fixed, instances: {INSTANCES}}}
    groups:
      - {{name: od, provider: local, market: on-demand, hourly_price: 4.0}}
"""


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    from autoscaler.simulations.traces import write_canonical

    rng = np.random.default_rng(42)
    n = int(RATE * SPAN)
    arrival = np.cumsum(rng.exponential(1 / RATE, n))
    trace = folder / "million.csv"
    write_canonical(trace, arrival, rng.exponential(MEAN, n))
    config = folder / "bench.yaml"
    config.write_text(CONFIG)
    return config, trace


ROUNDS = 3  # SimPy runs (tens of seconds each); the whole process runs PER_ROUND times per round
PER_ROUND = 3
TARGET_RATIO = 25.0


def _command(config: Path, trace: Path, *flags: str) -> list[str]:
    return [sys.executable, *flags, "-m", "autoscaler", "simulate", "-c", str(config),
            "--trace", str(trace), "--json"]


def _child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _rate(n: int, seconds: float) -> str:
    return f"{seconds:.3f} s = {n / seconds / 1e6:.2f} M req/s"


HEAVY = ("numpy", "pydantic", "click", "yaml", "asyncio", "autoscaler", "structlog", "rich",
         "matplotlib")


def import_times(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Total import time (ms) of one run, from ``-X importtime``, and the self time summed
    per heavy package (``pydantic`` includes ``pydantic_core``; absent: never imported)."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stderr
    total = 0.0
    heavy: dict[str, float] = {}
    for line in out.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        ms = int(own) / 1000
        total += ms
        root = name.strip().split(".")[0].removesuffix("_core")
        if root in HEAVY:
            heavy[root] = heavy.get(root, 0.0) + ms
    return total, heavy


def main() -> None:
    from autoscaler.simulations.session import open_session
    from autoscaler.simulations.specs import PolicySpec
    from benchmarks.simpy_fleet import simulate_fixed

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        config, trace = _write_inputs(Path(tmp))
        print(f"fleet: {INSTANCES} instances x {SLOTS} slots, Poisson {RATE:g} req/s for "
              f"{SPAN:g}s, exp service mean {MEAN:g}s (rho {RATE * MEAN / INSTANCES / SLOTS:.2f}),"
              f" 5 s ticks, trace {trace.stat().st_size / 1e6:.1f} MB; {ROUNDS} rounds of "
              f"{PER_ROUND} whole-process runs + 1 SimPy run")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        _child(_command(config, trace), env)  # warm-up: writes the bytecode cache
        session = open_session(config, trace)
        arrival, service = session.trace.arrival_s, session.trace.service_s
        n = len(session.trace)
        whole: list[tuple[float, float]] = []
        simpy: list[tuple[float, float]] = []
        simpy_waits = None
        for _ in range(ROUNDS):
            whole.extend(_child(_command(config, trace), env) for _ in range(PER_ROUND))
            wall, cpu = time.perf_counter(), time.process_time()
            simpy_waits = simulate_fixed(arrival, service, INSTANCES * SLOTS)
            simpy.append((time.perf_counter() - wall, time.process_time() - cpu))
        spans = []
        for _ in range(PER_ROUND):
            start = time.perf_counter()
            session = open_session(config, trace)
            run = session.run(PolicySpec("fixed"))
            spans.append(time.perf_counter() - start)
        w_wall, w_cpu = (float(np.median([t[k] for t in whole])) for k in (0, 1))
        s_wall, s_cpu = (float(np.median([t[k] for t in simpy])) for k in (0, 1))
        print(f"whole process (simulate --json): wall {_rate(n, w_wall)}, CPU {w_cpu:.3f} s "
              f"(wall range {min(t[0] for t in whole):.3f}-{max(t[0] for t in whole):.3f} s)")
        print(f"SimPy, same fleet and trace: wall {s_wall:.2f} s = {n / s_wall / 1e3:.0f} k req/s,"
              f" CPU {s_cpu:.2f} s (wall range {min(t[0] for t in simpy):.2f}-"
              f"{max(t[0] for t in simpy):.2f} s)")
        ratio_wall, ratio_cpu = s_wall / w_wall, s_cpu / w_cpu
        met = "met" if min(ratio_wall, ratio_cpu) >= TARGET_RATIO else "NOT met"
        print(f"ratio SimPy / whole process: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x CPU "
              f"(target >= {TARGET_RATIO:g}x: {met})")
        print(f"in-process load+simulate: {_rate(n, float(np.median(spans)))}")
        total, heavy = import_times(_command(config, trace, "-X", "importtime"), env)
        absent = [name for name in HEAVY if name not in heavy]
        print(f"imports of one whole run: {total:.0f} ms, of which "
              + ", ".join(f"{name} {ms:.0f}" for name, ms in heavy.items())
              + f"; not imported: {', '.join(absent) or 'none'}")
        assert simpy_waits is not None
        diff = float(np.abs(simpy_waits - run.waits).max())
        print(f"max |wait difference| SimPy vs kernel: {diff:.2e} s; "
              f"mean wait {run.waits.mean():.4f} s, SLA {run.result.sla_attainment:.4f}")


if __name__ == "__main__":
    main()
