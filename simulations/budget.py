"""The daemon's budget guardrail in the simulator: the same ``autoscaler.core.budget`` code.

Simulated time 0 is the first instant of a calendar month (January 2026, UTC), so the hard
cap spreads a budget over the month exactly as a daemon started on the 1st would; each tick
charges the instances the simulated fleet bills (booting, running, draining) at the group's
``hourly_price`` and caps the decision before it is carried out.

What differs from the daemon: the simulator runs one pool at a time, so a whole-config
``budget`` is applied to each pool as if that pool were alone under it (its round robin among
pools is not simulated), and a run starts with nothing spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.config.budget import BudgetConfig
from autoscaler.config.models import PoolConfig
from autoscaler.core.budget import (
    GLOBAL_SCOPE,
    CapInput,
    Ledger,
    billed_rate,
    cap_scale_out,
    charge,
    max_gap_for,
    pool_scope,
    used_ratio,
)
from autoscaler.core.model import Decision, FleetState
from autoscaler.core.pipeline import PoolController

SIM_MONTH_START = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where simulated time 0 falls on the wall clock."""


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """One scope's budget at the end of a run (the report's budget columns)."""

    scope: str
    monthly_usd: float
    spent_usd: float
    used_ratio: float
    alerts: tuple[tuple[str, float], ...]
    """``(level, simulated seconds)`` of each level reached."""
    held_ticks: int
    """Ticks on which the hard cap held scale-out below the decision."""

    def as_json(self) -> dict[str, object]:
        return {"scope": self.scope, "monthly_usd": self.monthly_usd,
                "spent_usd": round(self.spent_usd, 2), "used_ratio": round(self.used_ratio, 4),
                "alerts": [{"level": lv, "t_s": round(t, 3)} for lv, t in self.alerts],
                "held_ticks": self.held_ticks}


@dataclass(slots=True)
class SimBudget:
    """Charges, alerts and caps one simulated pool, tick by tick."""

    pool: PoolConfig
    controller: PoolController
    budgets: dict[str, BudgetConfig]
    interval_s: float
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    alerts: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)

    def apply(self, t: float, decision: Decision, fleet: FleetState) -> Decision:
        wall = SIM_MONTH_START + t
        prices = {g.name: g.hourly_price for g in self.pool.groups}
        rate = billed_rate(fleet, prices)
        allowances: dict[str, float | None] = {}
        for scope, budget in self.budgets.items():
            ledger, found, allowances[scope] = charge(
                budget.spec(scope), self.ledgers.get(scope), wall, rate,
                max_gap_s=max_gap_for(self.interval_s))
            self.ledgers[scope] = ledger
            self.alerts.setdefault(scope, []).extend((c.level, t) for c in found)
        if all(a is None for a in allowances.values()):
            return decision
        capped = cap_scale_out(
            {self.pool.name: CapInput(decision, fleet, self.controller.allocator, prices,
                                      self.pool.capacity.min, tuple(self.budgets))},
            allowances,
        )[self.pool.name]
        if capped.desired < decision.desired:
            for scope, allowed in allowances.items():
                if allowed is not None:
                    self.held[scope] = self.held.get(scope, 0) + 1
        return capped

    def summary(self) -> tuple[BudgetUse, ...]:
        out = []
        for scope, budget in self.budgets.items():
            ledger = self.ledgers.get(scope) or Ledger("")
            out.append(BudgetUse(scope, budget.monthly_usd, ledger.spent_usd,
                                 used_ratio(budget.spec(scope), ledger),
                                 tuple(self.alerts.get(scope, ())), self.held.get(scope, 0)))
        return tuple(out)


def sim_budget(
    pool: PoolConfig, global_budget: BudgetConfig | None, controller: PoolController,
    interval_s: float,
) -> SimBudget | None:
    """The guardrail for one simulated pool, or None when neither budget is configured."""
    budgets: dict[str, BudgetConfig] = {}
    if pool.budget is not None:
        budgets[pool_scope(pool.name)] = pool.budget
    if global_budget is not None:
        budgets[GLOBAL_SCOPE] = global_budget
    return SimBudget(pool, controller, budgets, interval_s) if budgets else None
