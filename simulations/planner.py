"""Assemble and run a plan: options and policies into jobs, jobs into candidates.

Everything is checked before the first simulation: each option's config text is loaded by the
daemon's loader (so an option the config cannot hold fails with its message), every policy
spec is validated against the policy's Params, and every trace is read once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoscaler.config.models import PoolConfig, load_config, parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.simulations.jobs import Job, TraceRef
from autoscaler.simulations.options import (
    Option,
    ReservedAdvice,
    advise_reserved,
    demand_instances,
    option_config_text,
    snippet,
)
from autoscaler.simulations.oracle import simulation_policies
from autoscaler.simulations.plan import Candidate, Plan, cheapest_meeting, default_specs
from autoscaler.simulations.specs import PolicySpec, SpecError, parse_spec, resolve
from autoscaler.simulations.study import sha256_file
from autoscaler.simulations.sweeps import Cache, run_jobs
from autoscaler.simulations.traces import batched, load_trace


@dataclass(frozen=True, slots=True)
class Setup:
    """One option as simulated: its config text, pool and the policy settings it runs."""

    option: Option
    reserved: int
    config_text: str
    pool: PoolConfig
    specs: tuple[PolicySpec, ...]


@dataclass(frozen=True, slots=True)
class Request:
    config_path: Path
    traces: tuple[Path, ...]
    options: tuple[Option, ...]
    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    warmup_s: float = 0.0
    pool: str | None = None


def _raw_pool(request: Request) -> tuple[dict[str, Any], str]:
    """The config's raw mapping (checked by the daemon's loader first: errors name lines)."""
    load_config(request.config_path)
    raw = yaml.safe_load(request.config_path.read_text())
    pools = raw.get("pools") or []
    names = [p.get("name") for p in pools]
    if request.pool is None:
        if len(pools) != 1:
            raise SpecError(f"{request.config_path}: several pools ({', '.join(names)}): "
                            "choose one with --pool")
        return raw, str(names[0])
    if request.pool not in names:
        raise SpecError(f"{request.config_path}: no pool named {request.pool!r} "
                        f"(pools: {', '.join(names)})")
    return raw, request.pool


def prepare(request: Request) -> tuple[list[Setup], list[ReservedAdvice], list[TraceRef],
                                         dict[str, Any]]:
    """Setups per option, reserved advice, trace refs and the base pool's raw mapping."""
    raw, pool_name = _raw_pool(request)
    base_pool = next(p for p in raw["pools"] if p.get("name") == pool_name)
    base = parse_config(option_config_text(raw, pool_name, request.options[0], 0),
                        f"{request.config_path} (option {request.options[0].name})").pools[0]
    refs, loaded = [], []
    for path in request.traces:
        trace = load_trace(path, base.service_model, seed=request.seeds[0])
        refs.append(TraceRef(str(path), sha256_file(path), trace.format == "rates"))
        loaded.append(trace)
    setups: list[Setup] = []
    advice: list[ReservedAdvice] = []
    for option in request.options:
        demands = [demand_instances(batched(t, base.service_model, option.slots),
                                    option.slots, request.warmup_s) for t in loaded]
        reserved = advise_reserved(option, demands)
        count = 0
        if reserved is not None:
            advice.append(reserved)
            count = reserved.count
        text = option_config_text(raw, pool_name, option, count)
        try:
            pool = parse_config(text, f"{request.config_path} (option {option.name})").pools[0]
        except ConfigFileError as exc:
            raise SpecError("; ".join(exc.messages)) from None
        specs = ([parse_spec(p) for p in request.policies] if request.policies
                 else default_specs(option, demands))
        policies = simulation_policies(loaded[0])
        for spec in specs:
            resolve(spec, pool, policies)  # SpecError names the spec
        setups.append(Setup(option, count, text, pool, tuple(specs)))
    return setups, advice, refs, base_pool


def jobs_of(setups: Sequence[Setup], refs: Sequence[TraceRef], seeds: Sequence[int],
            warmup_s: float) -> list[Job]:
    """In (option, spec, trace, seed) order: ``candidates`` reads them back in that order."""
    return [Job(ref, setup.config_text, spec, seed, warmup_s)
            for setup in setups for spec in setup.specs for ref in refs for seed in seeds]


def run_plan(request: Request, cache: Cache, *, workers: int | None = None,
             ray_address: str | None = None,
             on_total: Callable[[int], None] | None = None,
             on_done: Callable[[int], None] | None = None) -> Plan:
    setups, advice, refs, base_pool = prepare(request)
    jobs = jobs_of(setups, refs, request.seeds, request.warmup_s)
    if on_total is not None:
        on_total(len(jobs))
    results = iter(run_jobs(jobs, cache, workers=workers, ray_address=ray_address,
                            on_done=on_done))
    candidates = []
    for setup in setups:
        for spec in setup.specs:
            per_trace = tuple(tuple(next(results) for _ in request.seeds) for _ in refs)
            candidates.append(Candidate(setup.option, setup.reserved, spec,
                                        setup.pool.sla.target, per_trace))
    best = cheapest_meeting(candidates)
    text = None
    if best is not None:
        kind = best.spec.kind or setups[0].pool.policy.kind
        text = snippet(best.option, base_pool, best.reserved, kind, dict(best.spec.overrides))
    pool = setups[0].pool
    return Plan(tuple(candidates), tuple(advice), text, request.seeds,
                tuple(str(p) for p in request.traces), pool.sla.target,
                float(pool.sla.max_wait))
