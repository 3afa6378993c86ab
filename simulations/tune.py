"""Parameter sweeps: every combination of a grid, simulated on a process pool.

Each worker opens the session (config, trace, policies) once in its initializer and then runs
one combination per task, returning only the summary row, so tasks ship a few bytes each way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.simulations.engine import PolicyResult
from autoscaler.simulations.session import Session, open_session
from autoscaler.simulations.specs import PolicySpec, SpecError, parse_scalar, resolve


@dataclass(frozen=True, slots=True)
class Trial:
    params: dict[str, Any]
    result: PolicyResult


def parse_grid(entries: Sequence[str]) -> dict[str, list[Any]]:
    """``name=v1,v2`` entries into ``{name: [v1, v2]}``; repeated names are an error."""
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise SpecError(f"--grid {entry!r}: expected name=v1,v2,...")
        if name in grid:
            raise SpecError(f"--grid {entry!r}: {name!r} given twice")
        grid[name] = [parse_scalar(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def spec_for(kind: str, params: dict[str, Any]) -> PolicySpec:
    label = kind + ":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else kind
    return PolicySpec(label, kind, dict(params))


_SESSION: Session | None = None


def _init(config: str, trace: str, pool: str | None, warmup: float, seed: int) -> None:
    global _SESSION
    _SESSION = open_session(config, trace, pool, warmup_s=warmup, seed=seed)


def _trial(kind: str, params: dict[str, Any]) -> Trial:
    assert _SESSION is not None, "worker initializer did not run"
    return Trial(params, _SESSION.run(spec_for(kind, params)).result)


def sweep(
    session: Session,
    config_path: str | Path,
    trace_path: str | Path,
    kind: str,
    grid: dict[str, list[Any]],
    *,
    workers: int | None = None,
    on_done: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Run every combination; parameters are validated up front so a typo fails fast."""
    combos = combinations(grid)
    for params in combos:
        resolve(spec_for(kind, params), session.pool, session.policies)
    workers = max(1, min(workers or os.cpu_count() or 1, len(combos)))
    init_args = (str(config_path), str(trace_path), session.pool.name, session.warmup_s,
                 session.seed)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=init_args) as pool:
        futures = {pool.submit(_trial, kind, params): i for i, params in enumerate(combos)}
        done: list[tuple[int, Trial]] = []
        for future in as_completed(futures):
            trial = future.result()
            done.append((futures[future], trial))
            if on_done is not None:
                on_done(trial)
    return [trial for _, trial in sorted(done, key=lambda item: item[0])]


def pareto(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other trial beats on both cost (lower) and attainment (higher)."""
    ranked = sorted(trials, key=lambda tr: (tr.result.cost_usd, -tr.result.sla_attainment))
    front: list[Trial] = []
    best = -1.0
    for trial in ranked:
        if trial.result.sla_attainment > best:
            front.append(trial)
            best = trial.result.sla_attainment
    return front


def cheapest_meeting(trials: Sequence[Trial], target: float) -> Trial | None:
    ok = [tr for tr in trials if tr.result.sla_attainment >= target]
    return min(ok, key=lambda tr: tr.result.cost_usd) if ok else None
