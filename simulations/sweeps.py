"""Many independent simulations, on a local process pool or on Ray, cached on disk.

A job is (trace, config text, policy, seed): everything a run depends on, as plain data, so the
same function runs it in a local worker process or a Ray task and the result is the same
number for number. Each finished job is written to the cache at once, keyed by a hash of the
trace file's bytes, the config text, the policy, the seed, the warm-up and the package version,
so an interrupted sweep resumes where it stopped and a repeated one costs nothing.

Traces load once per worker process (local) or are put in Ray's object store once per trace
(and seed, for rate series, whose arrivals the seed draws).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from autoscaler.config.models import Config, parse_config
from autoscaler.simulations.engine import PolicyResult
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.session import Session
from autoscaler.simulations.specs import PolicySpec
from autoscaler.simulations.traces import Trace, batched, load_trace


@dataclass(frozen=True, slots=True)
class TraceRef:
    """A trace file as jobs see it: where it is, its content hash, whether seeds redraw it."""

    path: str
    sha256: str
    per_seed: bool

    def variant(self, seed: int) -> tuple[str, int]:
        """Which loaded copy a seed uses (recorded traces: the same one on every seed)."""
        return (self.sha256, seed if self.per_seed else 0)


@dataclass(frozen=True, slots=True)
class Job:
    trace: TraceRef
    config_text: str
    spec: PolicySpec
    seed: int
    warmup_s: float

    def key(self) -> str:
        config_hash = hashlib.sha256(self.config_text.encode()).hexdigest()
        policy = json.dumps([self.spec.label, self.spec.kind, self.spec.overrides],
                            sort_keys=True, default=str)
        text = json.dumps([_VERSION, self.trace.sha256, config_hash, policy, self.seed,
                           self.warmup_s])
        return hashlib.sha256(text.encode()).hexdigest()


def _package_version() -> str:
    try:
        return version("queue-autoscaler")
    except PackageNotFoundError:
        return "unknown"


_VERSION = _package_version()


# --------------------------------------------------------------------------- one job

@functools.lru_cache(maxsize=64)
def _config(text: str) -> Config:
    return parse_config(text, "<plan option>")


def load_variant(ref: TraceRef, seed: int, config_text: str) -> Trace:
    """The trace as loaded for ``seed`` (token traces use the config's service model)."""
    pool = _config(config_text).pools[0]
    return load_trace(ref.path, pool.service_model, seed=ref.variant(seed)[1])


def execute(job: Job, trace: Trace) -> dict[str, Any]:
    """Run one job on its loaded trace: the result's fields, unrounded."""
    config = _config(job.config_text)
    pool = config.pools[0]
    stretched = batched(trace, pool.service_model, pool.capacity.slots_per_instance)
    session = Session(config, pool, stretched, simulation_policies(stretched), job.warmup_s,
                      job.seed, Path(job.trace.path))
    return dataclasses.asdict(session.run(job.spec).result)


def result_of(fields: dict[str, Any]) -> PolicyResult:
    return PolicyResult(**fields)


# --------------------------------------------------------------------------- cache

class Cache:
    """One JSON file per job key under ``root``; ``root`` None: nothing kept."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.hits = 0

    def get(self, job: Job) -> dict[str, Any] | None:
        if self.root is None:
            return None
        path = self.root / f"{job.key()}.json"
        try:
            fields: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        self.hits += 1
        return fields

    def put(self, job: Job, fields: dict[str, Any]) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(fields, f)
        os.replace(tmp, self.root / f"{job.key()}.json")  # a reader never sees half a file


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autoscaler" / "plan"


# --------------------------------------------------------------------------- runners

Done = Callable[[int], None]
"""Called with the number of jobs just finished (cached ones included), for a progress bar."""


def run_jobs(jobs: Sequence[Job], cache: Cache, *, workers: int | None = None,
             ray_address: str | None = None, on_done: Done | None = None) -> list[PolicyResult]:
    """Every job's result, in job order: from the cache, else run locally or on Ray."""
    out: list[dict[str, Any] | None] = [cache.get(job) for job in jobs]
    if on_done is not None:
        on_done(sum(1 for r in out if r is not None))
    todo = [i for i, r in enumerate(out) if r is None]

    def finished(index: int, fields: dict[str, Any]) -> None:
        out[index] = fields
        cache.put(jobs[index], fields)
        if on_done is not None:
            on_done(1)

    if todo and ray_address is not None:
        from autoscaler.simulations.ray_runner import run_on_ray

        run_on_ray([jobs[i] for i in todo], ray_address,
                   lambda k, fields: finished(todo[k], fields))
    elif todo:
        _run_local([jobs[i] for i in todo], workers,
                   lambda k, fields: finished(todo[k], fields))
    missing = [i for i, r in enumerate(out) if r is None]
    assert not missing, f"jobs {missing} returned nothing"
    return [result_of(r) for r in out if r is not None]


_TRACES: dict[tuple[str, int], Trace] = {}


def _local_job(job: Job) -> dict[str, Any]:
    """A worker's task: its traces load once and stay for the next jobs."""
    variant = job.trace.variant(job.seed)
    trace = _TRACES.get(variant)
    if trace is None:
        trace = _TRACES[variant] = load_variant(job.trace, job.seed, job.config_text)
    return execute(job, trace)


def _run_local(jobs: Sequence[Job], workers: int | None,
               finished: Callable[[int, dict[str, Any]], None]) -> None:
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        for k, job in enumerate(jobs):
            finished(k, _local_job(job))
        return
    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(_local_job, job): k for k, job in enumerate(jobs)}
        for future in as_completed(futures):
            finished(futures[future], future.result())
