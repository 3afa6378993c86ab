"""Config + pool + trace + policies, assembled once for ``simulate``, ``tune`` and their workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.config.models import Config, PoolConfig, load_config
from autoscaler.config.to_core import controller_for
from autoscaler.core.pipeline import PoolController
from autoscaler.registry import Registry
from autoscaler.simulations.engine import Progress, Run, simulate
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.specs import PolicySpec, SpecError, resolve
from autoscaler.simulations.traces import Trace, load_trace


@dataclass(frozen=True, slots=True)
class Session:
    config: Config
    pool: PoolConfig
    trace: Trace
    policies: Registry[Any]
    warmup_s: float
    seed: int

    @property
    def interval_s(self) -> float:
        return float(self.config.controller.interval)

    def controller(self, spec: PolicySpec) -> PoolController:
        """The daemon's own controller, for the spec's policy (``SpecError`` if invalid)."""
        kind, params = resolve(spec, self.pool, self.policies)
        return controller_for(self.pool, self.interval_s, self.policies, kind, params)

    def run(self, spec: PolicySpec, progress: Progress | None = None) -> Run:
        label = spec.label if spec.kind is not None else self.pool.policy.kind
        return simulate(
            self.pool, self.interval_s, self.trace, self.controller(spec),
            label=label, warmup_s=self.warmup_s, seed=self.seed, progress=progress,
        )


def open_session(
    config_path: str | Path,
    trace_path: str | Path,
    pool_name: str | None = None,
    *,
    warmup_s: float = 0.0,
    seed: int = 0,
) -> Session:
    """Load and check everything; errors name the file (and line) that is wrong."""
    config = load_config(config_path)
    if pool_name is None:
        if len(config.pools) > 1:
            names = ", ".join(p.name for p in config.pools)
            raise SpecError(f"{config_path}: several pools ({names}): choose one with --pool")
        pool = config.pools[0]
    else:
        try:
            pool = config.pool(pool_name)
        except KeyError as exc:
            raise SpecError(f"{config_path}: {exc.args[0]}") from None
    trace = load_trace(trace_path, pool.service_model, seed=seed)
    return Session(config, pool, trace, simulation_policies(trace), warmup_s, seed)
