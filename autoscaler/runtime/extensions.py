"""Wiring of the cross-pool steps (pauses, budgets) and the gate that honours pauses.

``Daemon.build`` calls ``build_extensions`` once; everything here is optional: without a
state store server there is no pause (nothing to share it through), without ``budget`` blocks
no budget step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter

from autoscaler.config.models import Config
from autoscaler.core.budget import GLOBAL_SCOPE, max_gap_for, pool_scope
from autoscaler.core.pipeline import PoolController
from autoscaler.ports.clock import Clock
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.attainment import AttainmentStep
from autoscaler.runtime.budget import (
    LEDGER_TTL_S,
    BudgetMetrics,
    BudgetStep,
    PoolPricing,
    scopes_of,
)
from autoscaler.runtime.crosspool import Chain, CrossPoolStep
from autoscaler.runtime.gate import ActuationGate
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.pause import PauseGate, PauseStep, PauseStore
from autoscaler.runtime.state_store import RedisStateStore
from autoscaler.runtime.webhook import WebhookSender
from autoscaler.sources.redis.settings import RedisSettings

log = structlog.get_logger("autoscaler.runtime")


class PoolLike(Protocol):
    name: str
    controller: PoolController


def control_url(config: Config) -> str | None:
    """The Redis server that shares pauses and budget ledgers among replicas and restarts:
    ``controller.state_store.url``, else the first pool's Redis queue server, else none."""
    settings = config.controller.state_store
    if settings is None:
        return None
    if settings.url is not None:
        return settings.url
    for pool in config.pools:
        if isinstance(pool.queue.settings, RedisSettings):
            return str(pool.queue.settings.url)
    return None


def pause_store(config: Config) -> PauseStore | None:
    url = control_url(config)
    settings = config.controller.state_store
    if url is None or settings is None:
        return None
    return PauseStore(url, prefix=settings.prefix, timeout_s=settings.timeout)


@dataclass(slots=True)
class Extensions:
    gate: PauseGate
    cross_pool: CrossPoolStep
    pause: PauseStep | None = None
    budget: BudgetStep | None = None
    closers: list[PauseStep | BudgetStep] = field(default_factory=list)

    async def close(self) -> None:
        for closer in self.closers:
            await closer.close()


def build_extensions(
    config: Config, pools: Sequence[PoolLike], clock: Clock, telemetry: Telemetry,
    gate: ActuationGate,
) -> Extensions:
    registry = telemetry.registry if isinstance(telemetry, PrometheusTelemetry) else None
    pause_gate = PauseGate(gate)
    steps: list[CrossPoolStep] = []
    chain = Chain(steps)
    ext = Extensions(pause_gate, chain)
    store = pause_store(config)
    if store is not None:
        ext.pause = PauseStep(store, pause_gate, [p.name for p in pools], clock, registry)
        steps.append(ext.pause)
        ext.closers.append(ext.pause)
    if registry is not None:  # an estimate only the metrics show
        steps.append(AttainmentStep({p.name: p.sla.max_wait for p in config.pools}, registry))
    ext.budget = _budget(config, pools, clock, registry, pause_gate)
    if ext.budget is not None:
        steps.append(ext.budget)
        ext.closers.append(ext.budget)
    chain.steps = steps
    return ext


def _budget(
    config: Config, pools: Sequence[PoolLike], clock: Clock, registry: CollectorRegistry | None,
    gate: ActuationGate,
) -> BudgetStep | None:
    reg = registry
    budgets = [(pool_scope(p.name), p.budget) for p in config.pools if p.budget is not None]
    if config.budget is not None:
        budgets.append((GLOBAL_SCOPE, config.budget))
    if not budgets:
        return None
    by_name = {p.name: p for p in pools}
    pricing = {
        pool.name: PoolPricing(
            by_name[pool.name].controller, {g.name: g.hourly_price for g in pool.groups},
            scopes_of(pool.name, pool.budget is not None, config.budget is not None),
        )
        for pool in config.pools if pool.name in by_name
    }
    deliveries = None
    if reg is not None and any(b.webhook is not None for _, b in budgets):
        deliveries = Counter(
            "autoscaler_budget_webhook_deliveries",
            "Alert webhook deliveries by outcome (delivered, failed after every retry)",
            ["outcome"], registry=reg,
        )
    webhooks = {
        scope: WebhookSender(budget.webhook.url, timeout_s=budget.webhook.timeout,
                             retries=budget.webhook.retries, deliveries=deliveries)
        for scope, budget in budgets if budget.webhook is not None
    }
    url = control_url(config)
    settings = config.controller.state_store
    store = None
    if url is not None and settings is not None:
        store = RedisStateStore(url, prefix=settings.prefix + "budget:", ttl_s=LEDGER_TTL_S,
                                timeout_s=settings.timeout)
    else:
        log.warning("budget_not_persisted", reason="no state store server: a restart starts "
                    "the month's spend from zero")
    interval = config.controller.interval
    return BudgetStep(
        [b.spec(scope) for scope, b in budgets], pricing, clock, gate=gate, store=store,
        webhooks=webhooks, metrics=BudgetMetrics(reg) if reg is not None else None,
        max_gap_s=max_gap_for(interval),
    )
