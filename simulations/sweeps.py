"""Many independent simulations, on a local process pool or on Ray, cached on disk.

Jobs (``simulations.jobs``) are plain data run by one function, so a local worker process and
a Ray task give the same result number for number. Each finished job is written to the cache
at once, keyed by ``Job.key``, so an interrupted sweep resumes where it stopped and a repeated
one costs nothing.

Traces load once per worker process (local) or are put in Ray's object store once per trace
(and seed, for rate series, whose arrivals the seed draws).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from autoscaler.simulations.engine import PolicyResult
from autoscaler.simulations.jobs import Job, execute, load_variant, result_of
from autoscaler.simulations.traces import Trace

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
