"""The daemon's per-group, per-market, rate, cost and build metrics (``PrometheusTelemetry``
owns one ``FleetMetrics`` on its private registry and forwards what the loop reports).

Why a second module: the pool-level gauges in ``autoscaler.runtime.metrics`` answer "is the pool
keeping its SLA"; these answer the questions a dashboard asks next: which group and market the
instances are in (spot or on-demand), what they cost per hour, what traffic the pool sees, and
which build and process is answering. Label sets are fixed by the config, so cardinality is
bounded by pools x groups.
"""

from __future__ import annotations

import contextlib
import math
import platform

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

from autoscaler.config.models import Config
from autoscaler.core.model import Decision, FleetState, Observation

GROUP_LABELS = ["pool", "group", "market"]


def build_version() -> str:
    """The installed distribution's version (``autoscaler.__version__`` from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("queue-autoscaler")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
        from autoscaler import __version__

        return __version__


def _unknown_is_nan(value: float | int | None) -> float:
    """Prometheus has no "unknown": NaN, never a zero that would read as "no traffic"."""
    return math.nan if value is None else float(value)


class FleetMetrics:
    """Group and market gauges (``autoscaler_group_available{pool,group}`` is the crash-loop
    work's, in ``metrics``), arrival/completion/service rates, cost rate, build info and the
    process collector (``process_*``: CPU, resident memory, open file descriptors)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.group_desired = Gauge(
            "autoscaler_group_desired_instances",
            "The group's desired size as its provider accepted it", GROUP_LABELS, registry=r)
        self.group_target = Gauge(
            "autoscaler_group_target_instances",
            "The size the autoscaler's latest decision allocated to the group", GROUP_LABELS,
            registry=r)
        self.group_running = Gauge(
            "autoscaler_group_running_instances", "Instances serving in the group",
            GROUP_LABELS, registry=r)
        self.group_booting = Gauge(
            "autoscaler_group_booting_instances", "Instances booting in the group (billed, "
            "not serving)", GROUP_LABELS, registry=r)
        self.group_draining = Gauge(
            "autoscaler_group_draining_instances", "Instances leaving the group (billed, "
            "taking no new work)", GROUP_LABELS, registry=r)
        self.cost_rate = Gauge(
            "autoscaler_cost_rate_usd_per_hour",
            "Billed instances (booting + running + draining) x the group's hourly_price",
            GROUP_LABELS, registry=r)
        self.arrival_rate = Gauge(
            "autoscaler_arrival_rate",
            "Requests per second arriving at the pool's queue, as the source measured "
            "(NaN when the source cannot tell)", ["pool"], registry=r)
        self.completion_rate = Gauge(
            "autoscaler_completion_rate",
            "Requests per second completed by the pool's workers (NaN when unknown)",
            ["pool"], registry=r)
        self.service_rate = Gauge(
            "autoscaler_service_rate_per_slot",
            "Requests per second one busy slot completes, as the policy estimated it "
            "(NaN when the policy reports none)", ["pool"], registry=r)
        self.sla_max_wait = Gauge(
            "autoscaler_sla_max_wait_seconds", "The pool's sla.max_wait (a dashboard's line to "
            "compare the oldest wait with)", ["pool"], registry=r)
        self.sla_target = Gauge(
            "autoscaler_sla_target", "The pool's sla.target: the fraction of requests that "
            "must wait at most max_wait", ["pool"], registry=r)
        self.capacity_min = Gauge(
            "autoscaler_capacity_min_instances", "The pool's capacity.min", ["pool"], registry=r)
        self.capacity_max = Gauge(
            "autoscaler_capacity_max_instances", "The pool's capacity.max", ["pool"], registry=r)
        self.build_info = Gauge(
            "autoscaler_build_info", "Always 1: the running version and Python",
            ["version", "python"], registry=r)
        self.build_info.labels(build_version(), platform.python_version()).set(1)
        ProcessCollector(registry=r)
        self._prices: dict[tuple[str, str], float] = {}
        self._markets: dict[tuple[str, str], str] = {}

    def configure(self, config: Config) -> None:
        """The config's fixed figures: prices (the cost rate's factor), SLA and bounds."""
        self._prices = {(p.name, g.name): g.hourly_price for p in config.pools for g in p.groups}
        for pool in config.pools:
            self.sla_max_wait.labels(pool.name).set(pool.sla.max_wait)
            self.sla_target.labels(pool.name).set(pool.sla.target)
            self.capacity_min.labels(pool.name).set(pool.capacity.min)
            self.capacity_max.labels(pool.name).set(pool.capacity.max)

    def forget_pool(self, pool: str) -> None:
        """Drop a removed pool's series (a reload): no stale values exported as current."""
        for gauge in (self.arrival_rate, self.completion_rate, self.service_rate,
                      self.sla_max_wait, self.sla_target, self.capacity_min, self.capacity_max):
            with contextlib.suppress(KeyError):
                gauge.remove(pool)
        groups = [(p, g) for (p, g) in self._markets if p == pool]
        for key in groups:
            market = self._markets.pop(key)
            for gauge in (self.group_desired, self.group_target, self.group_running,
                          self.group_booting, self.group_draining, self.cost_rate):
                with contextlib.suppress(KeyError):
                    gauge.remove(pool, key[1], market)

    def observed(self, pool: str, obs: Observation) -> None:
        if not obs.fresh:
            return  # a stale copy carries old rates: keep the last measured values
        self.arrival_rate.labels(pool).set(_unknown_is_nan(obs.arrival_rate))
        self.completion_rate.labels(pool).set(_unknown_is_nan(obs.completion_rate))

    def described(self, pool: str, fleet: FleetState) -> None:
        for g in fleet.groups:
            labels = (pool, g.name, g.market.value)
            self._markets[(pool, g.name)] = g.market.value
            self.group_desired.labels(*labels).set(g.desired)
            self.group_running.labels(*labels).set(g.running)
            self.group_booting.labels(*labels).set(g.booting)
            self.group_draining.labels(*labels).set(g.draining)
            price = self._prices.get((pool, g.name), 0.0)
            self.cost_rate.labels(*labels).set((g.booting + g.running + g.draining) * price)

    def decided(self, decision: Decision) -> None:
        for group, target in decision.targets.items():
            market = self._markets.get((decision.pool, group))
            if market is not None:
                self.group_target.labels(decision.pool, group, market).set(target)
        mu = decision.terms.get("service_rate")
        value = math.nan
        if isinstance(mu, int | float) and not isinstance(mu, bool):
            value = float(mu)
        self.service_rate.labels(decision.pool).set(value)
