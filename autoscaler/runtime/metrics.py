"""The Prometheus implementation of the telemetry port (``autoscaler.ports.telemetry``).

The daemon uses ``PrometheusTelemetry`` on its *own* ``CollectorRegistry`` (never the global
default), so two daemons in one test process, or a daemon next to a library that registers its
own metrics, never collide. The simulator and the ``--once`` path use ``NullTelemetry``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from autoscaler.core.model import Decision, FleetState, Observation
from autoscaler.runtime.http import Health, MetricsServer
from autoscaler.runtime.http import serve as serve_http
from autoscaler.runtime.metrics_fleet import FleetMetrics

TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ReloadableRegistry(CollectorRegistry):
    """A registry on which a config reload may register a metric again.

    Components built from the config (persistence, pauses, budgets, the attainment estimate)
    register their collectors when they are wired; a reload wires a second set before the
    first is dropped. Inside ``replacing()``, a collector whose names are taken replaces the
    one holding them (the rebuilt component's collector is the one exported from then on; a
    replaced counter starts again from 0, which ``rate()`` reads as a reset). Outside, a
    duplicate raises as usual, so an accidental clash at start-up is still caught."""

    def __init__(self) -> None:
        super().__init__()
        self._replace = False

    @contextlib.contextmanager
    def replacing(self) -> Iterator[None]:
        self._replace = True
        try:
            yield
        finally:
            self._replace = False

    def register(self, collector: Collector) -> None:
        if self._replace:
            # prometheus_client's own name expansion (``_total``, ``_created``, ...): the
            # names ``register`` would refuse.
            names = set(self._get_names(collector))  # type: ignore[no-untyped-call]
            with self._lock:
                held = {self._names_to_collectors[n] for n in names
                        if n in self._names_to_collectors}
            for old in held:
                self.unregister(old)
        super().register(collector)


class PrometheusTelemetry:
    """Prometheus metrics for the daemon, on a private registry served by ``serve``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else ReloadableRegistry()
        self._server: MetricsServer | None = None
        self.health = Health()
        """Liveness and readiness served at ``/healthz`` and ``/readyz``; the daemon sets its
        interval and pools with ``health.configure``."""
        r = self.registry
        self.queue_depth = Gauge(
            "autoscaler_queue_depth", "Requests waiting in the pool's queue", ["pool"], registry=r
        )
        self.oldest_wait = Gauge(
            "autoscaler_queue_oldest_wait_seconds",
            "Age of the oldest waiting request (NaN when the source cannot tell)",
            ["pool"],
            registry=r,
        )
        self.in_flight = Gauge(
            "autoscaler_queue_in_flight", "Requests being served", ["pool"], registry=r
        )
        self.stale = Gauge(
            "autoscaler_observation_stale",
            "1 when the last sample failed and the observation is a stale copy",
            ["pool"],
            registry=r,
        )
        self.desired = Gauge(
            "autoscaler_desired_instances", "Instances the autoscaler decided on", ["pool"],
            registry=r,
        )
        self.recommended = Gauge(
            "autoscaler_recommended_instances",
            "The policy's recommendation before guards and bounds (the decision's "
            "'recommended' term; NaN when the guards did not report one)",
            ["pool"],
            registry=r,
        )
        self.saturated = Gauge(
            "autoscaler_pool_saturated",
            "1 while the pool is at capacity.max and the oldest wait exceeds sla.max_wait",
            ["pool"],
            registry=r,
        )
        self.running = Gauge(
            "autoscaler_running_instances", "Instances running, as providers report", ["pool"],
            registry=r,
        )
        self.booting = Gauge(
            "autoscaler_booting_instances", "Instances still booting", ["pool"], registry=r
        )
        self.draining = Gauge(
            "autoscaler_draining_instances",
            "Instances leaving: no new work, finishing what they hold, still billed", ["pool"],
            registry=r,
        )
        self.scale_actions = Counter(
            "autoscaler_scale_actions",
            "Decisions that at least one group's provider accepted (dry runs and failed calls "
            "excluded)",
            ["pool", "direction"],
            registry=r,
        )
        self.provider_errors = Counter(
            "autoscaler_provider_errors",
            "Failed provider calls, by class of error (throttled, denied, overdue...)",
            ["pool", "group", "operation", "error"],
            registry=r,
        )
        self.tick_duration = Histogram(
            "autoscaler_tick_duration_seconds",
            "Wall time of one control-loop tick (sample, describe, decide, actuate)",
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.leader = Gauge(
            "autoscaler_leader",
            "1 on the replica that may resize groups (the lease holder, or a lone daemon "
            "not in dry run), 0 on standbys",
            registry=r,
        )
        self.tick_overruns = Counter(
            "autoscaler_tick_overruns",
            "Interval slots skipped because a tick ran past the next one",
            registry=r,
        )
        self.observation_invalid = Counter(
            "autoscaler_observation_invalid",
            "Implausible enqueue times (future, before 2001, non-finite, milliseconds) that were"
            " reported as an unknown wait",
            ["pool", "reason"],
            registry=r,
        )
        self.fleet = FleetMetrics(r)
        """Per group and market, rates, cost, build info, process (``metrics_fleet``)."""

        self.instance_fast_failures = Counter(
            "autoscaler_instance_fast_failures",
            "Instances that exited on their own right after their start (crash loop)",
            ["pool", "group"],
            registry=r,
        )
        self.group_available = Gauge(
            "autoscaler_group_available",
            "0 while the group is held unavailable (capacity, boot timeout, crash loop: the "
            "reason is in the group_unavailable log line), 1 otherwise",
            ["pool", "group"],
            registry=r,
        )
        self._groups: dict[str, set[str]] = {}
        """Groups with a ``group_available`` series, by pool (``forget_pool`` drops them)."""
        self.state_save_failures = Counter(
            "autoscaler_state_save_failures",
            "Pools whose controller state could not be saved after a tick",
            registry=r,
        )

    def forget_pool(self, pool: str) -> None:
        """Drop a pool's gauges (a reload removed it): a pool no longer managed must not
        keep exporting its last values as if they were current. Counters keep their history."""
        for gauge in (self.queue_depth, self.oldest_wait, self.in_flight, self.stale,
                      self.desired, self.recommended, self.saturated, self.running,
                      self.booting, self.draining):
            with contextlib.suppress(KeyError):
                gauge.remove(pool)
        for group in self._groups.pop(pool, set()):
            with contextlib.suppress(KeyError):
                self.group_available.remove(pool, group)
        self.fleet.forget_pool(pool)

    def serve(self, host: str, port: int, *, timeout_s: float = 5.0,
              max_connections: int = 16) -> int:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` (``autoscaler.runtime.http``) in a
        daemon thread; returns the bound port (``port=0``)."""
        server, _thread = serve_http(host, port, self.registry, self.health,
                                     timeout_s=timeout_s, max_connections=max_connections)
        self._server = server
        bound: int = server.server_port
        return bound

    def shutdown(self) -> None:
        """Stop the HTTP exporter (a daemon run inside a test process must not leak it)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def record_observation(self, pool: str, obs: Observation) -> None:
        self.queue_depth.labels(pool).set(obs.depth)
        wait = obs.oldest_wait_s
        self.oldest_wait.labels(pool).set(math.nan if wait is None else wait)
        self.in_flight.labels(pool).set(math.nan if obs.in_flight is None else obs.in_flight)
        self.stale.labels(pool).set(0 if obs.fresh else 1)
        if obs.fresh:
            self.health.sampled(pool)
        self.fleet.observed(pool, obs)

    def record_fleet(self, pool: str, fleet: FleetState) -> None:
        self.running.labels(pool).set(fleet.running)
        self.booting.labels(pool).set(fleet.booting)
        self.draining.labels(pool).set(fleet.draining)
        for group in fleet.groups:
            self.group_available.labels(pool, group.name).set(1 if group.available else 0)
            self._groups.setdefault(pool, set()).add(group.name)
        self.fleet.described(pool, fleet)

    def record_decision(self, decision: Decision) -> None:
        self.desired.labels(decision.pool).set(decision.desired)
        rec = decision.terms.get("recommended")
        value = math.nan
        if isinstance(rec, int | float) and not isinstance(rec, bool):
            value = float(rec)
        self.recommended.labels(decision.pool).set(value)
        self.fleet.decided(decision)

    def record_saturation(self, pool: str, saturated: bool) -> None:
        self.saturated.labels(pool).set(1 if saturated else 0)

    def record_scale_action(self, decision: Decision) -> None:
        """A decision that resized at least one group (not a dry run, not a failed call)."""
        direction = decision.direction if decision.direction != "none" else "rebalance"
        self.scale_actions.labels(decision.pool, direction).inc()

    def record_provider_error(self, pool: str, group: str, operation: str, error: str) -> None:
        self.provider_errors.labels(pool, group, operation, error).inc()

    def record_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def record_tick(self, duration_s: float) -> None:
        self.tick_duration.observe(duration_s)
        self.health.ticked()

    def record_tick_overrun(self, skipped_slots: int) -> None:
        self.tick_overruns.inc(skipped_slots)

    def record_observation_invalid(self, pool: str, reason: str) -> None:
        self.observation_invalid.labels(pool=pool, reason=reason).inc()

    def record_instance_fast_failure(self, pool: str, group: str) -> None:
        self.instance_fast_failures.labels(pool=pool, group=group).inc()
