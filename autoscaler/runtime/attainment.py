"""``autoscaler_sla_attainment_estimate{pool}``: each pool's ``AttainmentWindow``
(``autoscaler.core.attainment``, which says what it estimates and its limits), fed every
tick's observation from the cross-pool step; decisions pass unchanged."""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge

from autoscaler.core.attainment import AttainmentWindow
from autoscaler.core.model import Decision
from autoscaler.runtime.crosspool import TickView

WINDOW_S = 600.0
"""Ten minutes: long enough to hold many requests at inference rates, short enough that the
gauge shows an incident while it lasts (the SLA's own period is the dashboard's business)."""


class AttainmentStep:
    def __init__(self, max_waits: Mapping[str, float], registry: CollectorRegistry,
                 window_s: float = WINDOW_S) -> None:
        self.windows = {pool: AttainmentWindow(m, window_s) for pool, m in max_waits.items()}
        self.gauge = Gauge(
            "autoscaler_sla_attainment_estimate",
            f"Estimated share of requests starting within sla.max_wait over the last "
            f"{window_s:g} s, from oldest wait, depth and arrival rate (NaN: no estimate yet)",
            ["pool"], registry=registry,
        )
        self._children: dict[str, Gauge] = {}

    async def __call__(self, view: TickView) -> Mapping[str, Decision]:
        for pool, obs in view.observations.items():
            window = self.windows.get(pool)
            if window is not None:
                estimate = window.observe(obs)
                child = self._children.get(pool)
                if child is None:
                    child = self._children[pool] = self.gauge.labels(pool)
                child.set(math.nan if estimate is None else estimate)
        return view.decisions
