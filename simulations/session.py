"""Config + pool + trace + policies, assembled once for ``simulate``, ``tune`` and their workers.

A session is one pool on one seed. ``reseeded`` moves it to another seed without reloading
the config, and reloads the trace only when the seed changes it (a rate series draws its
arrivals from the seed; recorded traces are the same on every seed).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.config.models import Config, PoolConfig, load_config
from autoscaler.config.plugins import default_registries
from autoscaler.config.to_core import controller_for
from autoscaler.core.pipeline import PoolController
from autoscaler.registry import Registry
from autoscaler.simulations.budget import sim_budget
from autoscaler.simulations.engine import Progress, Run, simulate, tick_phase
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.specs import PolicySpec, SpecError, resolve
from autoscaler.simulations.traces import Trace, batched, load_trace


@dataclass(frozen=True, slots=True)
class Session:
    config: Config
    pool: PoolConfig
    trace: Trace
    policies: Registry[Any]
    warmup_s: float
    seed: int
    trace_path: Path = Path()
    fixed_phase_s: float | None = None
    """The tick phase given on the command line; None: drawn from the seed."""

    @property
    def interval_s(self) -> float:
        return float(self.config.controller.interval)

    @property
    def phase_s(self) -> float:
        """Where the tick grid falls against the trace on this seed."""
        if self.fixed_phase_s is not None:
            return self.fixed_phase_s
        return tick_phase(self.seed, self.interval_s)

    def controller(self, spec: PolicySpec) -> PoolController:
        """The daemon's own controller, for the spec's policy (``SpecError`` if invalid)."""
        kind, params = resolve(spec, self.pool, self.policies)
        return controller_for(self.pool, self.interval_s, self.policies, kind, params)

    def label(self, spec: PolicySpec) -> str:
        return spec.label if spec.kind is not None else self.pool.policy.kind

    def deployable(self, spec: PolicySpec) -> bool:
        """Whether the daemon could run this policy: installed through the entry point group.

        ``oracle`` (registered by the simulator only) reads the future, so it is a reference.
        """
        return (spec.kind or self.pool.policy.kind) in _installed_policies()

    def run(self, spec: PolicySpec, progress: Progress | None = None) -> Run:
        controller = self.controller(spec)
        return simulate(
            self.pool, self.interval_s, self.trace, controller,
            label=self.label(spec), warmup_s=self.warmup_s, seed=self.seed,
            phase_s=self.phase_s, progress=progress,
            budget=sim_budget(self.pool, self.config.budget, controller, self.interval_s),
        )

    def reseeded(self, seed: int) -> Session:
        """The same pool on another seed (the trace is reloaded only if the seed changes it)."""
        if seed == self.seed:
            return self
        if self.trace.format != "rates":
            return dataclasses.replace(self, seed=seed)
        trace = batched(load_trace(self.trace_path, self.pool.service_model, seed=seed),
                        self.pool.service_model, self.pool.capacity.slots_per_instance)
        return dataclasses.replace(self, seed=seed, trace=trace,
                                   policies=simulation_policies(trace))


@functools.cache
def _installed_policies() -> frozenset[str]:
    """The policy entry points (the process-wide registry config loading already scanned)."""
    return frozenset(default_registries()["policies"].names())


def open_session(
    config_path: str | Path,
    trace_path: str | Path,
    pool_name: str | None = None,
    *,
    warmup_s: float = 0.0,
    seed: int = 0,
    tick_phase_s: float | None = None,
    config: Config | None = None,
) -> Session:
    """Load and check everything; errors name the file (and line) that is wrong.

    ``config`` skips reloading a config already loaded from ``config_path`` (one per pool).
    """
    if config is None:
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
    if tick_phase_s is not None and not 0 <= tick_phase_s < config.controller.interval:
        raise SpecError(f"--tick-phase {tick_phase_s:g}: must be in [0, interval "
                        f"{float(config.controller.interval):g}s)")
    trace = batched(load_trace(trace_path, pool.service_model, seed=seed),
                    pool.service_model, pool.capacity.slots_per_instance)
    return Session(config, pool, trace, simulation_policies(trace), warmup_s, seed,
                   Path(trace_path), tick_phase_s)
