"""Simulator throughput: a million-request trace, whole pipeline, against a SimPy model.

Fleet: Poisson arrivals at 2,000 req/s for 500 s (1,000,000 requests), exponential service
with a 1 s mean, 260 instances x 8 slots, controller ticking every 5 s. Figures printed (never
asserted), all medians over several runs in this one process, same trace and fleet throughout:
in-process load+simulate; the whole ``autoscaler simulate --json`` process as installed
(bytecode cached, after one discarded warm-up run), and again without bytecode writes when this
shell sets PYTHONDONTWRITEBYTECODE (every project module compiled from source each run); and
SimPy on the same trace and fleet (``fixed`` policy, one run: it takes tens of seconds), with
the waits of both compared.
"""

from __future__ import annotations

import os
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


RUNS = 5
TARGET_WHOLE = 2e6  # req/s, whole process


def _process(config: Path, trace: Path, env: dict[str, str]) -> float:
    """Median wall time of the whole CLI process, after one discarded warm-up run."""
    cmd = [sys.executable, "-m", "autoscaler", "simulate", "-c", str(config),
           "--trace", str(trace), "--json"]
    times = []
    for _ in range(RUNS + 1):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _rate(n: int, seconds: float) -> str:
    return f"{seconds:.3f} s = {n / seconds / 1e6:.2f} M req/s"


def main() -> None:
    from autoscaler.simulations.session import open_session
    from autoscaler.simulations.specs import PolicySpec

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        config, trace = _write_inputs(Path(tmp))
        print(f"fleet: {INSTANCES} instances x {SLOTS} slots, Poisson {RATE:g} req/s for "
              f"{SPAN:g}s, exp service mean {MEAN:g}s (rho {RATE * MEAN / INSTANCES / SLOTS:.2f}),"
              f" 5 s ticks, trace {trace.stat().st_size / 1e6:.1f} MB; medians of {RUNS} runs")
        installed = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        installed["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        whole = _process(config, trace, installed)
        uncached = None
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            uncached = _process(config, trace, dict(os.environ))
        spans, loads = [], []
        for _ in range(RUNS):
            start = time.perf_counter()
            session = open_session(config, trace)
            loaded = time.perf_counter()
            run = session.run(PolicySpec("fixed"))
            spans.append(time.perf_counter() - start)
            loads.append(loaded - start)
        inproc = float(np.median(spans))
        n = len(session.trace)
        print(f"in-process load+simulate: {_rate(n, inproc)} (load {np.median(loads):.3f} s)")
        met = "met" if n / whole >= TARGET_WHOLE else "NOT met"
        print(f"whole process, bytecode cached: {_rate(n, whole)} (interpreter start, imports, "
              f"config, load, simulate, JSON; target {TARGET_WHOLE / 1e6:g} M req/s {met})")
        if uncached is not None:
            print(f"whole process, PYTHONDONTWRITEBYTECODE=1: {_rate(n, uncached)}")

        from benchmarks.simpy_fleet import simulate_fixed

        start = time.perf_counter()
        simpy_waits = simulate_fixed(session.trace.arrival_s, session.trace.service_s,
                                     INSTANCES * SLOTS)
        simpy_s = time.perf_counter() - start
        print(f"SimPy same fleet: {simpy_s:.2f} s = {n / simpy_s / 1e3:.0f} k req/s; "
              f"speed-up {simpy_s / inproc:.0f}x in-process, {simpy_s / whole:.0f}x whole process")
        diff = float(np.abs(simpy_waits - run.waits).max())
        print(f"max |wait difference| SimPy vs kernel: {diff:.2e} s; "
              f"mean wait {run.waits.mean():.4f} s, SLA {run.result.sla_attainment:.4f}")


if __name__ == "__main__":
    main()
