"""``oracle``: a reference policy that knows the future arrivals (simulator only).

It is not an entry point: no daemon can run it. It sizes the fleet for the busiest ``bin`` of
offered load (slot-seconds arriving per second) between now and ``now + boot_time + window``,
times ``headroom``, so capacity launched now is ready for the load that arrives once it has
booted, and nothing is drained that the next boot-time's load still needs. It goes through the
same guards and allocator as every other policy, so its cost is a practical floor for an
online policy under the same behaviour rules; ``lower_bound_cost_usd`` is the absolute one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from autoscaler.core.model import Recommendation
from autoscaler.core.policy import PolicyContext, PolicyParams
from autoscaler.durations import Duration
from autoscaler.registry import POLICY_GROUP, Registry
from simulations.traces import Trace


class OracleParams(PolicyParams):
    headroom: float = Field(default=1.15, ge=1.0, description="capacity per unit of load")
    window: Duration = Field(default=60.0, ge=0, description="look-ahead past the boot time")
    bin: Duration = Field(default=5.0, gt=0, description="load is averaged over bins this long")


class OraclePolicy:
    """Bound to one trace by ``oracle_for``; ``trace`` is a class attribute for that reason."""

    kind: ClassVar[str] = "oracle"
    Params: ClassVar[type[PolicyParams]] = OracleParams
    arrival: ClassVar[np.ndarray[Any, np.dtype[np.float64]]] = np.zeros(1)
    work: ClassVar[np.ndarray[Any, np.dtype[np.float64]]] = np.zeros(1)

    def __init__(self, params: OracleParams) -> None:
        self.params = params

    def initial_state(self) -> None:
        return None

    def _work_before(self, t: np.ndarray[Any, np.dtype[np.float64]]) -> Any:
        return self.work[np.searchsorted(self.arrival, t, side="left")]

    def recommend(self, ctx: PolicyContext, state: None) -> tuple[Recommendation, None]:
        p = self.params
        now = ctx.obs.time
        horizon = ctx.pool.boot_time_s + ctx.pool.interval_s + p.window
        edges = now + np.arange(0.0, horizon + p.bin, p.bin)
        loads = np.diff(self._work_before(edges)) / p.bin
        peak = float(loads.max()) if loads.size else 0.0
        slots = ctx.pool.slots_per_instance
        for_future = math.ceil(peak * p.headroom / slots - 1e-9)
        for_now = math.ceil(ctx.obs.demand / slots)
        desired = max(for_future, for_now)
        return (
            Recommendation(
                desired,
                f"peak future load {peak:.1f} slots within {horizon:g}s",
                {"future_load": round(peak, 3), "for_future": for_future, "for_now": for_now},
            ),
            None,
        )


def oracle_for(trace: Trace) -> type[OraclePolicy]:
    """An oracle class that reads this trace's arrivals and cumulative work."""
    work = np.concatenate([[0.0], np.cumsum(trace.service_s)])
    return type(
        "TraceOracle", (OraclePolicy,), {"arrival": trace.arrival_s, "work": work}
    )


def simulation_policies(trace: Trace, base: Registry[Any] | None = None) -> Registry[Any]:
    """The installed policies plus ``oracle`` for this trace; only the simulator sees it."""
    registry = Registry[Any](POLICY_GROUP, "policy").load_entry_points()
    if base is not None:
        for name, item in base:
            registry.register(name, item)
    registry.register("oracle", oracle_for(trace))
    return registry
