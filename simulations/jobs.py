"""A sweep job as plain data, and the one function that runs it (locally or as a Ray task).

A job is (trace, config text, policy, seed, warm-up): everything a run depends on, so the same
``execute`` gives the same numbers wherever it runs, and ``Job.key`` names its result in the
cache (the trace file's hash, the config text, the policy, the seed, the warm-up and the
package version).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
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
