"""Cost of the cross-pool step per tick at 1000 pools: the budget guardrail (accrual, alert
checks, metrics, the hard cap with its round-robin grants) and the SLA attainment estimate.

Every pool has its own capped budget and all share a capped global one; half the pools want
to scale out each tick (by 1-4 instances); the global budget ($10.5M a month, about $14,100/h
from the 1st) binds after a few ticks, so grants are tried and refused every tick, the
expensive case. The step runs without a store
(persistence is one pipelined round trip per tick in the background, measured by the state
store's own figures). Prints the median and p90 over ticks of wall and CPU time per tick.

Compare with ``bench_decision`` (the decision core itself, budgeted at 50 us per pool per
tick): the cross-pool step adds to each tick what is printed here.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import structlog
from prometheus_client import CollectorRegistry

from autoscaler.config.models import Config
from autoscaler.config.plugins import default_registries
from autoscaler.config.to_core import controller_for
from autoscaler.core.budget import GLOBAL_SCOPE, pool_scope
from autoscaler.core.model import Decision, FleetState, GroupState, Market, Observation
from autoscaler.ports.clock import ManualClock
from autoscaler.runtime.attainment import AttainmentStep
from autoscaler.runtime.budget import BudgetMetrics, BudgetStep, PoolPricing
from autoscaler.runtime.crosspool import TickView
from autoscaler.runtime.gate import OpenGate

POOLS = 1000
TICKS = 60
INTERVAL = 5.0


def _config() -> Config:
    pools = [{
        "name": f"pool-{i}", "queue": {"kind": "memory", "name": f"q{i}"},
        "sla": {"max_wait": "10s"}, "capacity": {"min": 1, "max": 200},
        "budget": {"monthly_usd": 20_000, "hard_cap": True},
        "groups": [
            {"name": "spot", "provider": "local", "market": "spot", "hourly_price": 1.0},
            {"name": "od", "provider": "local", "hourly_price": 3.0},
        ],
    } for i in range(POOLS)]
    return Config.model_validate(
        {"pools": pools, "budget": {"monthly_usd": 10_500_000, "hard_cap": True}},
        context={"registries": default_registries()})


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    config = _config()
    regs = default_registries()
    controllers = {p.name: controller_for(p, INTERVAL, regs["policies"]) for p in config.pools}
    pricing = {name: PoolPricing(c, {"spot": 1.0, "od": 3.0}, (pool_scope(name), GLOBAL_SCOPE))
               for name, c in controllers.items()}
    specs = [p.budget.spec(pool_scope(p.name)) for p in config.pools if p.budget is not None]
    assert config.budget is not None
    specs.append(config.budget.spec(GLOBAL_SCOPE))
    clock = ManualClock(wall_offset=1_767_225_600.0)  # the 1st of a month
    registry = CollectorRegistry()
    budget = BudgetStep(specs, pricing, clock, gate=OpenGate(), metrics=BudgetMetrics(registry))
    attainment = AttainmentStep({p.name: p.sla.max_wait for p in config.pools}, registry)
    sizes = {name: 4 + i % 20 for i, name in enumerate(controllers)}
    walls, cpus, held = [], [], []

    async def run() -> None:
        for tick in range(TICKS):
            clock.advance(INTERVAL)
            fleets, decisions, observations = {}, {}, {}
            for i, (name, c) in enumerate(controllers.items()):
                n = sizes[name]
                fleet = FleetState((GroupState("spot", Market.SPOT, n, 0, n),
                                    GroupState("od", Market.ON_DEMAND, 0, 0, 0)))
                want = n + (1 + (i + tick) % 4 if (i + tick) % 2 else 0)
                fleets[name] = fleet
                decisions[name] = Decision(name, clock.monotonic(), n, want,
                                           c.allocator.allocate(want, fleet), "bench")
                observations[name] = Observation(clock.monotonic(), i % 7, 0.5 * (i % 7),
                                                 arrival_rate=2.0)
            view = TickView(decisions, fleets, observations)
            w0, c0 = time.perf_counter(), time.thread_time()
            out = await budget(view)
            await attainment(view)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.thread_time() - c0)
            held.append(sum(decisions[n].desired - d.desired for n, d in out.items()))
            for name, d in out.items():
                sizes[name] = d.desired

    asyncio.run(run())
    p90 = int(0.9 * len(walls))
    print(f"{POOLS} pools, {TICKS} ticks: cross-pool step (budget with pool and global hard "
          f"caps, attainment estimate)")
    print(f"  wall per tick: median {statistics.median(walls) * 1e3:.2f} ms, "
          f"p90 {sorted(walls)[p90] * 1e3:.2f} ms")
    print(f"  CPU  per tick: median {statistics.median(cpus) * 1e3:.2f} ms, "
          f"p90 {sorted(cpus)[p90] * 1e3:.2f} ms  "
          f"({statistics.median(cpus) / POOLS * 1e6:.1f} us per pool)")
    print(f"  instances held by the caps per tick: median {statistics.median(held):.0f}, "
          f"max {max(held)}")


if __name__ == "__main__":
    main()
