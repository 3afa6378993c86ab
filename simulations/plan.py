"""Capacity planning: which option, market mix and policy meets the SLA cheapest on my traffic.

``autoscaler plan`` is a study over a grid: every option (instance type, prices, boot time,
market mix) x every policy setting x every trace x every seed, each one a simulation of the
daemon's own decision core (``sweeps`` runs them, cached, locally or on Ray). A candidate is an
(option, policy setting); it *meets the SLA* when its worst trace-and-seed attainment reaches
the pool's target. The answer is the cheapest candidate that meets it, the cost/attainment
Pareto frontier (``tune.pareto``'s rule over candidates), and the recommended option's
``capacity``/``groups``/``policy`` as YAML.

Policies: ``--policy SPEC`` as given, or every built-in policy over a small grid of its main
knob, scaled to the option's slots (``default_specs``). Reserved capacity: an option with
``reserved_price`` is simulated with the commitment ``options.advise_reserved`` derives from
the traces' demand and that price's break-even share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscaler.simulations.engine import HOURS_PER_MONTH, PolicyResult
from autoscaler.simulations.options import Option, ReservedAdvice
from autoscaler.simulations.specs import PolicySpec
from autoscaler.simulations.tune import spec_for

BUILT_IN = ("fixed", "threshold", "target-tracking", "step", "sla")


def default_specs(option: Option, demands: Sequence[Any]) -> list[PolicySpec]:
    """Every built-in policy over a small grid of its main knob, in the option's units.

    ``fixed`` holds the busiest minute's demand and 1.25x it (a static fleet has to); the
    per-instance targets of ``threshold`` and ``target-tracking`` are fractions of the slots;
    ``sla`` varies the miss budget it sizes for; ``step`` runs its defaults.
    """
    peak = max((float(d.max()) for d in demands if d.size), default=1.0)
    fixed = sorted({max(1, math.ceil(peak)), max(1, math.ceil(peak * 1.25))})
    s = option.slots
    specs = [spec_for("fixed", {"instances": n}) for n in fixed]
    specs += [spec_for("threshold", {"target": _knob(s * f)}) for f in (1.0, 0.75)]
    specs += [spec_for("target-tracking", {"target": _knob(s * f)}) for f in (0.8, 0.6)]
    specs.append(spec_for("step", {}))
    specs += [spec_for("sla", {"budget_share": b}) for b in (1.0, 0.5)]
    return specs


def _knob(value: float) -> float | int:
    rounded = round(value, 2)
    return int(rounded) if rounded == int(rounded) else rounded


@dataclass(frozen=True, slots=True)
class Candidate:
    """One option with one policy setting, over every trace and seed."""

    option: Option
    reserved: int
    spec: PolicySpec
    target: float
    results: tuple[tuple[PolicyResult, ...], ...]
    """``results[trace][seed]``."""

    def _trace_mean(self, name: str) -> float:
        return sum(float(np.mean([float(getattr(r, name)) for r in per_seed]))
                   for per_seed in self.results)

    @property
    def cost_usd(self) -> float:
        """Mean over seeds, summed over the traces: what the traces' traffic costs."""
        return self._trace_mean("cost_usd")

    @property
    def counted_hours(self) -> float:
        return sum(per_seed[0].counted_s for per_seed in self.results) / 3600.0

    @property
    def cost_per_hour_usd(self) -> float:
        hours = self.counted_hours
        return self.cost_usd / hours if hours > 0 else 0.0

    @property
    def attainment_min(self) -> float:
        return min(r.sla_attainment for per_seed in self.results for r in per_seed)

    @property
    def meets(self) -> bool:
        return self.attainment_min >= self.target

    @property
    def policy(self) -> str:
        return self.spec.label

    def as_json(self) -> dict[str, Any]:
        """The issue's five keys first; the rest were added for the table and the plot."""
        return {
            "option": self.option.name,
            "policy": self.policy,
            "cost_usd": round(self.cost_usd, 2),
            "sla_attainment_min": round(self.attainment_min, 4),
            "meets_sla": self.meets,
            "cost_per_hour_usd": round(self.cost_per_hour_usd, 4),
            "cost_per_month_usd": round(self.cost_per_hour_usd * HOURS_PER_MONTH, 2),
            "cost_spot_usd": round(self._trace_mean("cost_spot_usd"), 2),
            "cost_on_demand_usd": round(self._trace_mean("cost_on_demand_usd"), 2),
            "cost_reserved_usd": round(self._trace_mean("cost_reserved_usd"), 2),
            "reserved_instances": self.reserved,
            "wait_p99_s_worst": round(max(r.wait_p99_s for p in self.results for r in p), 3),
            "preemptions": sum(r.preemptions for p in self.results for r in p),
        }


def pareto(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both cost (lower) and worst attainment (higher)."""
    ranked = sorted(candidates, key=lambda c: (c.cost_usd, -c.attainment_min))
    front: list[Candidate] = []
    best = -1.0
    for candidate in ranked:
        if candidate.attainment_min > best:
            front.append(candidate)
            best = candidate.attainment_min
    return front


def cheapest_meeting(candidates: Sequence[Candidate]) -> Candidate | None:
    ok = [c for c in candidates if c.meets]
    return min(ok, key=lambda c: (c.cost_usd, -c.attainment_min)) if ok else None


@dataclass(frozen=True, slots=True)
class Plan:
    candidates: tuple[Candidate, ...]
    reserved: tuple[ReservedAdvice, ...]
    snippet: str | None
    seeds: tuple[int, ...]
    traces: tuple[str, ...]
    target: float
    max_wait_s: float

    @property
    def best(self) -> Candidate | None:
        return cheapest_meeting(self.candidates)

    @property
    def frontier(self) -> list[Candidate]:
        return pareto(self.candidates)

    def document(self) -> dict[str, Any]:
        """The ``--json`` shape: ``candidates`` and ``best`` (README, "Plan"); keys only added."""
        best = self.best
        front = {id(c) for c in self.frontier}
        return {
            "candidates": [c.as_json() | {"pareto": id(c) in front} for c in self.candidates],
            "best": None if best is None else best.as_json(),
            "reserved": [r.as_json() for r in self.reserved],
            "snippet": self.snippet,
            "sla_target": self.target,
            "seeds": list(self.seeds),
            "traces": list(self.traces),
        }
