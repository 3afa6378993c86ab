"""Many runs read as one answer: which policy to deploy on each pool, and what it will cost.

A study is every policy spec on every pool on every seed. Per pool and policy it keeps the mean
and the worst attainment over the seeds and the mean cost (trace total, per hour, per 30-day
month, spot / on-demand); across pools, a total per policy. The recommendation for a pool is
the cheapest *deployable* policy whose worst seed still meets the pool's SLA target: references
(the oracle, which reads the future, and the lower bound) are shown, never recommended.

What it does not tell you: seeds sample spot luck, boot spread, tick phase and (for rate
series) arrivals, so "meets on every seed" is evidence over those seeds only, not a guarantee.
The ``--json`` document built here is documented in the README; keys are only ever added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from autoscaler.config.models import PoolConfig
from autoscaler.simulations.engine import HOURS_PER_MONTH, PolicyResult, Run
from autoscaler.simulations.kernel import F64


@dataclass(frozen=True, slots=True)
class Row:
    """One policy spec on one pool, over every seed."""

    pool: str
    policy: str
    reference: bool
    target: float
    runs: tuple[Run, ...]

    @property
    def results(self) -> list[PolicyResult]:
        return [r.result for r in self.runs]

    @property
    def attainment_mean(self) -> float:
        return sum(r.sla_attainment for r in self.results) / len(self.runs)

    @property
    def attainment_worst(self) -> float:
        return min(r.sla_attainment for r in self.results)

    @property
    def meets(self) -> bool:
        return self.attainment_worst >= self.target

    def mean(self, name: str) -> float:
        return sum(float(getattr(r, name)) for r in self.results) / len(self.runs)

    def as_json(self) -> dict[str, Any]:
        per_hour = self.mean("cost_per_hour_usd")
        return {
            "pool": self.pool,
            "policy": self.policy,
            "reference": self.reference,
            "seeds": [r.seed for r in self.results],
            "sla_target": self.target,
            "sla_attainment_mean": round(self.attainment_mean, 4),
            "sla_attainment_worst": round(self.attainment_worst, 4),
            "meets_sla_every_seed": self.meets,
            "cost_usd_mean": round(self.mean("cost_usd"), 2),
            "cost_per_hour_usd": round(per_hour, 4),
            "cost_per_month_usd": round(per_hour * HOURS_PER_MONTH, 2),
            "cost_spot_usd_mean": round(self.mean("cost_spot_usd"), 2),
            "cost_on_demand_usd_mean": round(self.mean("cost_on_demand_usd"), 2),
            "cost_reserved_usd_mean": round(self.mean("cost_reserved_usd"), 2),
            "instance_hours_mean": round(self.mean("instance_hours"), 3),
            "wait_p99_s_worst": round(max(r.wait_p99_s for r in self.results), 3),
            "launch_failures": sum(r.launch_failures for r in self.results),
            "requeued": sum(r.requeued for r in self.results),
            "preemptions": sum(r.preemptions for r in self.results),
        }


@dataclass(frozen=True, slots=True)
class Total:
    """One policy spec summed over the pools; attainment weighted by counted requests."""

    policy: str
    rows: tuple[Row, ...]

    def attainment(self, seed_index: int) -> float:
        results = [row.results[seed_index] for row in self.rows]
        requests = sum(r.requests for r in results)
        if not requests:
            return 1.0
        return sum(r.sla_attainment * r.requests for r in results) / requests

    def as_json(self) -> dict[str, Any]:
        seeds = len(self.rows[0].runs)
        per_seed = [self.attainment(k) for k in range(seeds)]
        per_hour = sum(row.mean("cost_per_hour_usd") for row in self.rows)
        return {
            "policy": self.policy,
            "pools": [row.pool for row in self.rows],
            "reference": any(row.reference for row in self.rows),
            "sla_attainment_mean": round(sum(per_seed) / seeds, 4),
            "sla_attainment_worst": round(min(per_seed), 4),
            "every_pool_meets_sla_every_seed": all(row.meets for row in self.rows),
            "cost_usd_mean": round(sum(row.mean("cost_usd") for row in self.rows), 2),
            "cost_per_hour_usd": round(per_hour, 4),
            "cost_per_month_usd": round(per_hour * HOURS_PER_MONTH, 2),
            "cost_spot_usd_mean": round(sum(r.mean("cost_spot_usd") for r in self.rows), 2),
            "cost_on_demand_usd_mean": round(
                sum(r.mean("cost_on_demand_usd") for r in self.rows), 2),
            "launch_failures": sum(r.launch_failures for row in self.rows
                                   for r in row.results),
            "requeued": sum(r.requeued for row in self.rows for r in row.results),
        }


@dataclass(frozen=True, slots=True)
class Bound:
    """The lower bound of one pool (busy slot-seconds at the cheapest price), mean over seeds."""

    pool: str
    cost_usd: float
    counted_s: float

    @property
    def cost_per_hour_usd(self) -> float:
        return self.cost_usd * 3600.0 / self.counted_s if self.counted_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "policy": "lower bound",
            "reference": True,
            "cost_usd_mean": round(self.cost_usd, 2),
            "cost_per_hour_usd": round(self.cost_per_hour_usd, 4),
            "cost_per_month_usd": round(self.cost_per_hour_usd * HOURS_PER_MONTH, 2),
        }


@dataclass(slots=True)
class Study:
    """Filled pool by pool (``add``); read by the table, the PNG and the JSON document."""

    seeds: tuple[int, ...]
    warmup_s: float
    pools: list[PoolConfig] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    bounds: list[Bound] = field(default_factory=list)
    spec_labels: list[str] = field(default_factory=list)
    """Total-row label per spec ("configured" when each pool runs its own policy)."""
    arrivals: dict[str, F64] = field(default_factory=dict)
    """Per pool, the arrival times of its first seed's trace (what the PNG plots)."""

    def add(self, pool: PoolConfig, labels: Sequence[str], references: Sequence[bool],
            runs: Sequence[Sequence[Run]], arrival: F64) -> None:
        """``runs[spec][seed]`` of one pool; ``arrival``: its first seed's arrival times."""
        self.pools.append(pool)
        self.arrivals[pool.name] = arrival
        for label, reference, per_seed in zip(labels, references, runs, strict=True):
            self.rows.append(Row(pool.name, label, reference, pool.sla.target, tuple(per_seed)))
        first = runs[0]
        self.bounds.append(Bound(
            pool.name, sum(r.lower_bound_cost_usd for r in first) / len(first),
            first[0].result.counted_s,
        ))

    def pool_rows(self, pool: str) -> list[Row]:
        return [row for row in self.rows if row.pool == pool]

    def totals(self) -> list[Total]:
        per_pool = [self.pool_rows(p.name) for p in self.pools]
        return [Total(label, tuple(rows[k] for rows in per_pool))
                for k, label in enumerate(self.spec_labels)]

    def recommend(self, pool: str) -> Row | None:
        """The cheapest deployable policy meeting the SLA on every seed, if any."""
        ok = [row for row in self.pool_rows(pool) if row.meets and not row.reference]
        return min(ok, key=lambda row: row.mean("cost_usd")) if ok else None

    def recommendation_json(self) -> list[dict[str, Any]]:
        out = []
        for pool in self.pools:
            best = self.recommend(pool.name)
            out.append({
                "pool": pool.name,
                "policy": None if best is None else best.policy,
                "sla_target": pool.sla.target,
                "seeds": list(self.seeds),
                **({} if best is None else {
                    k: best.as_json()[k] for k in (
                        "sla_attainment_worst", "cost_usd_mean", "cost_per_hour_usd",
                        "cost_per_month_usd")
                }),
            })
        return out

    def document(self) -> dict[str, Any]:
        """The ``--json`` shape (README, "Simulate"): rows per run, then the answers."""
        return {
            "results": [r.result.as_json() | {"reference": row.reference}
                        for row in self.rows for r in row.runs],
            "lower_bound_cost_usd": round(sum(b.cost_usd for b in self.bounds), 2),
            "summary": [row.as_json() for row in self.rows] + [b.as_json() for b in self.bounds],
            "total": [t.as_json() for t in self.totals()],
            "recommendation": self.recommendation_json(),
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provenance(config_path: Path, traces: dict[str, Path], study: Study,
               tick_phase_s: float | None) -> dict[str, Any]:
    """What produced a ``results.json``: enough to rerun it and to notice a changed input."""
    config_bytes = config_path.read_bytes()
    try:
        package = version("queue-autoscaler")
    except PackageNotFoundError:  # run from a source tree that was never installed
        package = "unknown"
    return {
        "version": package,
        "config": {
            "path": str(config_path.resolve()),
            "sha256": hashlib.sha256(config_bytes).hexdigest(),
            "content": config_bytes.decode("utf-8", "replace"),
        },
        "traces": [{"pool": pool, "path": str(path.resolve()), "sha256": sha256_file(path)}
                   for pool, path in traces.items()],
        "seeds": list(study.seeds),
        "tick_phase_fixed_s": tick_phase_s,
        "tick_phases_s": {str(r.result.seed): round(r.result.tick_phase_s, 3)
                          for r in study.rows[0].runs} if study.rows else {},
        "warmup_s": study.warmup_s,
    }
