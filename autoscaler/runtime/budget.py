"""Budget guardrails in the daemon: the cross-pool step that accrues cost, alerts and caps.

Each tick, before the gate (``autoscaler.runtime.crosspool``): charge every scope (each pool
with a ``budget``, and the whole config's ``budget`` over all pools) for the instances the
providers reported billed since the last tick (``autoscaler.core.budget.accrue``); announce
each level newly reached this month (``budget_alert`` at ``alert_at``, ``budget_exhausted`` at
100 %) in the log, in ``autoscaler_budget_alerts_total`` and on the scope's webhook, in a
background task; with ``hard_cap``, hold scale-out at what the rest of the budget pays for
until the month ends (``autoscaler.core.budget.cap_scale_out``).

The ledgers persist in the state store's Redis server, one record per scope under
``{prefix}budget:`` with a 40-day expiry (a month's record outlives the month), written after
each tick by the replica whose gate is open, so a restart or a failover resumes the month's
spend. Standbys accrue their own copy from the same observations.

What is not guaranteed: a store that cannot be read at start leaves the ledgers at what this
process has seen; they are merged with the stored month as soon as a load succeeds (until
then nothing is saved, so a stored month is never overwritten by a smaller one). Time the
daemon did not observe beyond ``max_gap_s`` is not charged (see ``autoscaler.core.budget``).
Two acting daemons (no leader election) on one store overwrite each other's ledgers, the
``global`` one included even when they run different pools: give each its own
``state_store.prefix``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from autoscaler.core.budget import (
    GLOBAL_SCOPE,
    BudgetSpec,
    CapInput,
    Crossing,
    Ledger,
    billed_rate,
    cap_scale_out,
    charge,
    used_ratio,
)
from autoscaler.core.model import Decision
from autoscaler.core.pipeline import PoolController
from autoscaler.core.state_codec import StateCodec, StateCodecError
from autoscaler.ports.clock import Clock
from autoscaler.ports.state_store import StateStore, StateStoreError
from autoscaler.runtime.crosspool import TickView
from autoscaler.runtime.gate import ActuationGate
from autoscaler.runtime.webhook import WebhookSender

log = structlog.get_logger("autoscaler.runtime")

LEDGER_TTL_S = 40 * 86400.0
CODEC = StateCodec([Ledger])


@dataclass(frozen=True, slots=True)
class PoolPricing:
    """What the guardrail needs of one pool: its controller (allocator, min) and its scopes."""

    controller: PoolController
    prices: Mapping[str, float]
    scopes: tuple[str, ...]


class BudgetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.spent = Gauge("autoscaler_budget_spent_usd",
                           "Cost accrued this calendar month (UTC), from observed instances",
                           ["scope"], registry=r)
        self.ratio = Gauge("autoscaler_budget_used_ratio",
                           "Share of the monthly budget spent this month", ["scope"], registry=r)
        self.monthly = Gauge("autoscaler_budget_monthly_usd", "The configured monthly budget",
                             ["scope"], registry=r)
        self.rate = Gauge("autoscaler_budget_cost_rate_usd_per_hour",
                          "Dollars per hour of the instances billed now", ["scope"], registry=r)
        self.allowance = Gauge(
            "autoscaler_budget_allowance_usd_per_hour",
            "With hard_cap: the hourly rate the rest of the budget pays for until the month "
            "ends", ["scope"], registry=r)
        self.alerts = Counter("autoscaler_budget_alerts",
                              "Budget levels reached (alert at alert_at, exhausted at 100 %)",
                              ["scope", "level"], registry=r)
        self.held = Gauge("autoscaler_budget_held_instances",
                          "Instances of scale-out the hard cap refused at the last decision",
                          ["pool"], registry=r)
        self._scopes: dict[str, tuple[Gauge, ...]] = {}
        self._pools: dict[str, Gauge] = {}

    def scope(self, spec: BudgetSpec) -> tuple[Gauge, ...]:
        """The scope's children (spent, ratio, rate, allowance), looked up once: ``labels()``
        costs microseconds, times thousands of scopes per tick. The monthly budget is a
        constant, set on the first lookup."""
        children = self._scopes.get(spec.scope)
        if children is None:
            self.monthly.labels(spec.scope).set(spec.monthly_usd)
            children = self._scopes[spec.scope] = tuple(
                g.labels(spec.scope) for g in (self.spent, self.ratio, self.rate,
                                               self.allowance))
        return children

    def held_for(self, pool: str) -> Gauge:
        child = self._pools.get(pool)
        if child is None:
            child = self._pools[pool] = self.held.labels(pool)
        return child


class BudgetStep:
    """The budget guardrail as a cross-pool step (see the module docstring)."""

    def __init__(
        self,
        specs: Sequence[BudgetSpec],
        pools: Mapping[str, PoolPricing],
        clock: Clock,
        *,
        gate: ActuationGate,
        store: StateStore | None = None,
        webhooks: Mapping[str, WebhookSender] | None = None,
        metrics: BudgetMetrics | None = None,
        max_gap_s: float = 120.0,
    ) -> None:
        self.specs = {s.scope: s for s in specs}
        self.pools = dict(pools)
        self.clock = clock
        self.gate = gate
        self.store = store
        self.webhooks = dict(webhooks or {})
        self.metrics = metrics
        self.max_gap_s = max_gap_s
        self.ledgers: dict[str, Ledger] = {}
        self.read_only = False
        """Never save (``run --once``: one look must not write over a live daemon's month)."""
        self.loaded = store is None
        self._rates: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._save_failing = False
        self._first = True
        self._load_task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None

    async def __call__(self, view: TickView) -> Mapping[str, Decision]:
        wall = self.clock.wall()
        if not self.loaded:
            await self._start_load()
        for pool, fleet in view.fleets.items():
            if pool in self.pools:
                self._rates[pool] = billed_rate(fleet, self.pools[pool].prices)
        rates = dict.fromkeys(self.specs, 0.0)
        for pool, r in self._rates.items():  # one pass: thousands of pools, each in 1-2 scopes
            for scope in self.pools[pool].scopes:
                rates[scope] += r
        allowances: dict[str, float | None] = {}
        for scope, spec in self.specs.items():
            rate = rates[scope]
            ledger, found, allowances[scope] = charge(
                spec, self.ledgers.get(scope), wall, rate, max_gap_s=self.max_gap_s)
            self.ledgers[scope] = ledger
            for crossing in found:
                self._announce(spec, crossing)
            self._export(spec, ledger, rate, allowances[scope])
        decisions = self._cap(view, allowances)
        if self._may_save() and (self._save_task is None or self._save_task.done()):
            # In the background (bounded by the store's timeout); one at a time, the next
            # tick saves what a skipped one would have.
            self._save_task = asyncio.get_running_loop().create_task(
                self._save(dict(self.ledgers)), name="budget-save")
        return decisions

    def _may_save(self) -> bool:
        return (self.store is not None and self.loaded and self.gate.is_open()
                and not self.read_only)

    # ------------------------------------------------------------------ the cap

    def _cap(
        self, view: TickView, allowances: Mapping[str, float | None]
    ) -> Mapping[str, Decision]:
        if all(a is None for a in allowances.values()):
            return view.decisions
        inputs = {
            name: CapInput(d, view.fleets[name], p.controller.allocator, p.prices,
                           p.controller.spec.capacity.min, p.scopes)
            for name, d in view.decisions.items()
            if (p := self.pools.get(name)) is not None and name in view.fleets
        }
        capped = cap_scale_out(inputs, allowances)
        out = dict(view.decisions)
        for name, decision in capped.items():
            wanted = view.decisions[name].desired
            held = wanted - decision.desired
            if bool(held) != bool(self._held.get(name, 0)):  # starts or ends, not every change
                if held:
                    log.warning("budget_cap", pool=name, wanted=wanted, desired=decision.desired,
                                current=decision.current, allowances={
                                    s: round(a, 4) for s in self.pools[name].scopes
                                    if (a := allowances.get(s)) is not None})
                else:
                    log.info("budget_cap_lifted", pool=name, desired=decision.desired)
            self._held[name] = held
            if self.metrics is not None:
                self.metrics.held_for(name).set(held)
            out[name] = decision
        return out

    # ------------------------------------------------------------------ alerts and metrics

    def _announce(self, spec: BudgetSpec, crossing: Crossing) -> None:
        event = "budget_exhausted" if crossing.level == "exhausted" else "budget_alert"
        log.warning(event, scope=crossing.scope, month=crossing.month,
                    spent_usd=round(crossing.spent_usd, 2), monthly_usd=crossing.monthly_usd,
                    ratio=round(crossing.ratio, 4), alert_at=spec.alert_at,
                    hard_cap=spec.hard_cap)
        if self.metrics is not None:
            self.metrics.alerts.labels(crossing.scope, crossing.level).inc()
        sender = self.webhooks.get(crossing.scope)
        # Only the actor posts: standbys, dry runs, --once and explain see the same crossing.
        if sender is not None and self.gate.is_open() and not self.read_only:
            sender.send({
                "event": event, "scope": crossing.scope, "month": crossing.month,
                "spent_usd": round(crossing.spent_usd, 2), "monthly_usd": crossing.monthly_usd,
                "ratio": round(crossing.ratio, 4), "alert_at": spec.alert_at,
                "hard_cap": spec.hard_cap,
            })

    def _export(self, spec: BudgetSpec, ledger: Ledger, rate: float,
                allowance: float | None) -> None:
        if self.metrics is None:
            return
        spent, ratio, rate_gauge, allowed = self.metrics.scope(spec)
        spent.set(ledger.spent_usd)
        ratio.set(used_ratio(spec, ledger))
        rate_gauge.set(rate)
        if allowance is not None:
            allowed.set(allowance)

    # ------------------------------------------------------------------ persistence

    async def _start_load(self) -> None:
        """The first tick waits for the load (bounded by the store's timeout): the month's
        spend must be known before the cap decides. While the store cannot be read, later ticks
        retry in the background without waiting."""
        if self._load_task is None or self._load_task.done():
            self._load_task = asyncio.get_running_loop().create_task(self._load(),
                                                                     name="budget-load")
        if self._first:
            self._first = False
            await asyncio.shield(self._load_task)

    async def _load(self) -> None:
        assert self.store is not None
        try:
            records = await self.store.load(sorted(self.specs))
        except StateStoreError as exc:
            log.warning("budget_load_failed", store=self.store.location, error=str(exc))
            return
        self.loaded = True
        for scope, text in records.items():
            try:
                stored = CODEC.loads(text)
            except StateCodecError as exc:
                log.warning("budget_ledger_discarded", scope=scope, reason=str(exc))
                continue
            if not isinstance(stored, Ledger):
                log.warning("budget_ledger_discarded", scope=scope, reason="not a ledger")
                continue
            self.ledgers[scope] = _merge(stored, self.ledgers.get(scope))
            log.info("budget_resumed", scope=scope, month=stored.month,
                     spent_usd=round(self.ledgers[scope].spent_usd, 4))

    async def _save(self, ledgers: Mapping[str, Ledger]) -> None:
        assert self.store is not None
        records = {scope: CODEC.dumps(ledger) for scope, ledger in ledgers.items()}
        try:
            await self.store.save(records)
        except StateStoreError as exc:
            if not self._save_failing:
                log.warning("budget_save_failed", store=self.store.location, error=str(exc))
            self._save_failing = True
            return
        self._save_failing = False

    async def close(self) -> None:
        for task in (self._load_task, self._save_task):
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=1.0)  # a save in flight gets to finish
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for sender in self.webhooks.values():
            await sender.close()
        if self.store is not None:
            await self.store.close()


def _merge(stored: Ledger, seen: Ledger | None) -> Ledger:
    """The stored month plus what this process accrued before it could read it."""
    if seen is None:
        return stored
    if seen.month != stored.month:
        return seen if seen.month > stored.month else stored
    return replace(seen, spent_usd=stored.spent_usd + seen.spent_usd,
                   alerted=max(stored.alerted, seen.alerted))


def scopes_of(pool: str, has_pool_budget: bool, has_global: bool) -> tuple[str, ...]:
    scopes: list[str] = []
    if has_pool_budget:
        scopes.append(f"pool:{pool}")
    if has_global:
        scopes.append(GLOBAL_SCOPE)
    return tuple(scopes)
