"""``autoscaler explain -c FILE [--pool P] [--json]``: one dry-run tick, explained to a person.

It is the daemon's own tick (``Daemon.build`` with the dry-run gate, so nothing is ever
resized): the queues are sampled once from their real sources, the fleets described by their
providers, the controller state resumed from the state store read-only (so the guards'
windows are the live daemon's), then every pool decided and the cross-pool step (pauses,
budgets) applied. For each pool it shows what was observed, the policy's recommendation and
terms, each guard or cross-pool step that changed the count, and the allocation per group
with the reason for each target.

Exit codes: 0 every shown pool was decided on fresh data, 1 one was not (its queue could not
be sampled or its fleet described: the reason is shown), 2 an invalid config or pool name.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from autoscaler.cli.common import EXIT_INVALID, config_or_exit
from autoscaler.cli.explain_render import render
from autoscaler.config.models import Config
from autoscaler.core.budget import GLOBAL_SCOPE, allowance_usd_per_h, pool_scope, used_ratio
from autoscaler.core.model import Decision, FleetState, Observation, Recommendation
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.core.policy import PolicyContext
from autoscaler.runtime.app import BuildError, Daemon
from autoscaler.runtime.logs import configure_logging
from autoscaler.runtime.loop import PoolTick


def _observation(obs: Observation | None) -> dict[str, Any] | None:
    if obs is None:
        return None
    return {"depth": obs.depth, "oldest_wait_s": obs.oldest_wait_s, "in_flight": obs.in_flight,
            "arrival_rate": obs.arrival_rate, "completion_rate": obs.completion_rate,
            "fresh": obs.fresh}


def _steps(rec: Recommendation, decision: Decision) -> tuple[list[str], list[str]]:
    """The guards' notes and the cross-pool steps' notes, from the decision's reason (each step
    appends ``; note`` to the reason it was given)."""
    tail = decision.reason[len(rec.reason):] if decision.reason.startswith(rec.reason) else ""
    notes = [n for n in tail.split("; ") if n]
    guards = [n for n in notes if not n.startswith("budget:") and "unavailable:" not in n]
    cross = [n for n in notes if n not in guards]
    return guards, cross


def _why(controller: PoolController, fleet: FleetState, name: str, target: int) -> str:
    order = [g.name for g in controller.allocator.order]
    spec = next(g for g in controller.allocator.order if g.name == name)
    state = fleet.group(name)
    base = controller.allocator.on_demand_base
    rank = f"preference {order.index(name) + 1} of {len(order)} ({spec.market.value}, " \
           f"${spec.hourly_price:g}/h)"
    if state is not None and not state.available:
        return f"unavailable ({state.reason or 'launches fail'}): keeps what runs, no more"
    if spec.min and target == spec.min:
        return f"its min {spec.min}"
    if spec.max is not None and target >= spec.max:
        return f"full at its max {spec.max}; {rank}"
    if target == 0:
        return f"not needed: preferred groups hold the total; {rank}"
    if base and spec.market.value == "on-demand":
        return f"{rank}; on_demand_base {base}"
    return rank


def explain_pool(
    tick: PoolTick, controller: PoolController, before: ControllerState, kind: str,
    paused: bool, budget: list[dict[str, Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pool": tick.pool, "policy_kind": kind, "paused": paused,
        "observation": _observation(tick.observation), "errors": list(tick.errors),
        "sla": {"max_wait_s": controller.spec.sla.max_wait_s,
                "target": controller.spec.sla.target},
        "capacity": {"min": controller.spec.capacity.min, "max": controller.spec.capacity.max},
        "budget": budget,
    }
    obs, fleet, decision = tick.observation, tick.fleet, tick.decision
    if obs is None or fleet is None or decision is None:
        return out
    ctx = PolicyContext(obs=obs, fleet=fleet, pool=controller.settings)
    rec, _ = controller.policy.recommend(ctx, before.policy)  # pure: the same answer again
    guards, cross = _steps(rec, decision)
    out["policy"] = {"desired": rec.desired, "reason": rec.reason, "terms": dict(rec.terms)}
    out["guards"] = guards
    out["guard_terms"] = {k: v for k, v in decision.terms.items() if k not in rec.terms}
    out["cross_pool"] = cross
    out["decision"] = {"current": decision.current, "desired": decision.desired,
                       "direction": decision.direction, "targets": dict(decision.targets),
                       "reason": decision.reason,
                       "would_act": decision.changes(fleet) and not paused}
    out["allocation"] = [
        {"group": g.name, "market": g.market.value,
         "hourly_price": next(s.hourly_price for s in controller.allocator.order
                              if s.name == g.name),
         "available": g.available, "desired": g.desired, "running": g.running,
         "booting": g.booting, "pending": g.pending, "draining": g.draining,
         "target": decision.targets.get(g.name, 0),
         "why": _why(controller, fleet, g.name, decision.targets.get(g.name, 0))}
        for g in fleet.groups
    ]
    return out


async def explain_config(config: Config, pool: str | None) -> tuple[list[dict[str, Any]], bool]:
    """One dry-run tick of every pool (the cross-pool step sees them all); the explanations of
    the chosen ones and whether each was decided on fresh data."""
    daemon = Daemon.build(config, dry_run=True)
    loop = daemon.loop
    try:
        if loop.persistence is not None:
            # the live daemon's windows, holds and counter readings, read-only
            await loop.persistence.load(loop.pools, holds=loop.unavailability,
                                        samplers=loop.samplers)
        before = {rt.name: rt.state for rt in loop.pools}
        await daemon.start()
        results = await loop.tick()
    finally:
        await daemon.close(0.0)
    ext = daemon.extensions
    paused = ext.gate.paused if ext is not None else frozenset()
    out, ok = [], True
    for tick, rt in zip(results, loop.pools, strict=True):
        if pool is not None and tick.pool != pool:
            continue
        ok = ok and tick.decision is not None and bool(tick.observation and
                                                       tick.observation.fresh)
        out.append(explain_pool(tick, rt.controller, before[rt.name],
                                config.pool(rt.name).policy.kind, rt.name in paused,
                                _budget(daemon, rt.name)))
    return out, ok


def _budget(daemon: Daemon, pool: str) -> list[dict[str, Any]]:
    step = daemon.extensions.budget if daemon.extensions is not None else None
    if step is None:
        return []
    rows = []
    for scope in (pool_scope(pool), GLOBAL_SCOPE):
        spec, ledger = step.specs.get(scope), step.ledgers.get(scope)
        if spec is None or ledger is None:
            continue
        rows.append({"scope": scope, "month": ledger.month, "spent_usd": ledger.spent_usd,
                     "monthly_usd": spec.monthly_usd, "used_ratio": used_ratio(spec, ledger),
                     "hard_cap": spec.hard_cap,
                     "allowance_usd_per_h": allowance_usd_per_h(spec, ledger,
                                                                daemon.loop.clock.wall())})
    return rows


@click.command()
@click.option("--config", "-c", "config_path", required=True,
              type=click.Path(dir_okay=False), help="The YAML config file.")
@click.option("--pool", default=None, help="Explain this pool only (default: every pool).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def explain(config_path: str, pool: str | None, as_json: bool) -> None:
    """Sample every queue once and explain the decision a tick would make (never resizes)."""
    config = config_or_exit(config_path)
    if pool is not None and pool not in {p.name for p in config.pools}:
        click.echo(f"error: no pool named {pool!r} (pools: "
                   f"{', '.join(p.name for p in config.pools)})", err=True)
        sys.exit(EXIT_INVALID)
    configure_logging("error")  # the explanation is the output; problems are in it
    try:
        pools, ok = asyncio.run(explain_config(config, pool))
    except BuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json.dumps({"pools": pools}, indent=2, sort_keys=True, default=str))
    else:
        render(pools)
    sys.exit(0 if ok else 1)
