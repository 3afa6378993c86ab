"""Decision-core time per pool per tick: policy + guards + allocator via ``PoolController``
(plus ``applied`` on the ticks that change the count, as the daemon does).

1000 pools (two groups each: spot then on-demand), each ticked with its own slowly varying
observation (2 to ~70 erlangs of offered load, 2 s requests, a queue that comes and goes) and
the fleet its previous decision asked for (as a provider would describe it once resized), for
the ``threshold`` and ``sla`` policies, alternating for a few rounds in one run (the machines
are shared and noisy: compare the figures of one run). Prints per-round medians over ticks of
the per-pool time (wall time of one tick over all pools / number of pools), their ratio, and
the median and p90 over all rounds.

Budget: ``sla`` <= 50 us per pool per tick, interpreted (1000 pools decided in 50 ms of a 5 s
tick). Only ``decide`` is timed: observations and fleet states are built beforehand, as the
shell would. Each tick is timed twice: wall time, and this thread's CPU time, which leaves out
the time the thread waited for a core (on a shared, oversubscribed machine the wall figure
mostly measures the neighbours).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping

from autoscaler.config.models import Config
from autoscaler.config.plugins import default_registries
from autoscaler.config.to_core import controller_for
from autoscaler.core.model import FleetState, GroupState, Market, Observation
from autoscaler.core.pipeline import ControllerState

POOLS = 1000
TICKS = 120
ROUNDS = 3
INTERVAL = 5.0


def _config(policy: str) -> Config:
    pools = [
        {
            "name": f"pool-{i}",
            "queue": {"kind": "memory", "name": f"q{i}"},
            "sla": {"max_wait": "10s", "target": 0.99},
            "capacity": {"min": 1, "max": 200, "slots_per_instance": 8, "boot_time": "180s"},
            "policy": {"kind": policy},
            "groups": [
                {"name": "spot", "provider": "local", "market": "spot", "hourly_price": 1.0},
                {"name": "od", "provider": "local", "hourly_price": 3.0},
            ],
        }
        for i in range(POOLS)
    ]
    return Config.model_validate({"pools": pools}, context={"registries": default_registries()})


def _observation(i: int, tick: int) -> Observation:
    rate = 2.0 + (i % 50) * 0.5 * (1.0 + 0.3 * math.sin(tick / 10.0 + i))
    busy = int(rate * 2.0)
    depth = int(max(0.0, 10.0 * math.sin(tick / 7.0 + i)))
    return Observation(
        time=tick * INTERVAL,
        depth=depth,
        oldest_wait_s=depth * 0.3 if depth else None,
        in_flight=busy,
        arrival_rate=rate,
        completion_rate=busy / 2.0,
    )


def _fleet(targets: Mapping[str, int]) -> FleetState:
    """The fleet as the provider describes it after the last decision was carried out (all
    running: the guards then see no change they did not make, as in the daemon)."""
    return FleetState(
        (
            GroupState("spot", Market.SPOT, targets["spot"], 0, targets["spot"]),
            GroupState("od", Market.ON_DEMAND, targets["od"], 0, targets["od"]),
        )
    )


def measure(policy: str) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per pool for each steady tick (the first ticks fill caches and
    windows)."""
    config = _config(policy)
    policies = default_registries()["policies"]
    controllers = [controller_for(pool, INTERVAL, policies) for pool in config.pools]
    states: list[ControllerState] = [c.initial_state() for c in controllers]
    targets: list[Mapping[str, int]] = [{"spot": 1, "od": 0} for _ in range(POOLS)]
    per_pool: list[float] = []
    cpu_per_pool: list[float] = []
    for tick in range(TICKS):
        row = [(_observation(i, tick), _fleet(targets[i])) for i in range(POOLS)]
        start, cpu_start = time.perf_counter(), time.thread_time()
        for i, controller in enumerate(controllers):
            obs, fleet = row[i]
            decision, states[i] = controller.decide(obs, fleet, states[i])
            if decision.changes(fleet):  # the daemon records what it applied
                states[i] = controller.applied(states[i], decision)
            targets[i] = decision.targets
        per_pool.append((time.perf_counter() - start) / POOLS)
        cpu_per_pool.append((time.thread_time() - cpu_start) / POOLS)
    return per_pool[10:], cpu_per_pool[10:]


def main() -> None:
    print(f"{POOLS} pools x {TICKS} ticks, decide() = policy + guards + allocator, interpreted")
    print(f"{ROUNDS} rounds, threshold and sla alternating; medians per round, then overall")
    wall: dict[str, list[float]] = {"threshold": [], "sla": []}
    cpu: dict[str, list[float]] = {"threshold": [], "sla": []}
    for round_ in range(ROUNDS):
        medians: dict[str, tuple[float, float]] = {}
        for policy in wall:
            steady, steady_cpu = measure(policy)
            wall[policy].extend(steady)
            cpu[policy].extend(steady_cpu)
            medians[policy] = statistics.median(steady), statistics.median(steady_cpu)
        (t_wall, t_cpu), (s_wall, s_cpu) = medians["threshold"], medians["sla"]
        print(
            f"  round {round_ + 1}: threshold {t_wall * 1e6:5.1f} us wall / {t_cpu * 1e6:5.1f} "
            f"us cpu, sla {s_wall * 1e6:5.1f} / {s_cpu * 1e6:5.1f} us "
            f"(sla/threshold cpu {s_cpu / t_cpu:.2f})"
        )
    for policy in wall:
        samples, cpu_samples = wall[policy], cpu[policy]
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{policy:>10}: median {statistics.median(samples) * 1e6:6.1f} us wall "
              f"(p90 {p90 * 1e6:6.1f}), {statistics.median(cpu_samples) * 1e6:6.1f} us cpu "
              f"per pool per tick")


if __name__ == "__main__":
    main()
