"""Telemetry is a port: the loop reports what it saw and did; an implementation decides where.

The daemon uses the Prometheus implementation (``autoscaler.runtime.metrics``) on its *own*
``CollectorRegistry``; the simulator and the ``--once`` path use ``NullTelemetry``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from autoscaler.core.model import Decision, FleetState, Observation


class InstanceFailures:
    """Provider-side telemetry without a dependency on the runtime: a provider client that
    can tell when an instance failed right after its start owns one of these as its
    ``instance_failures`` attribute and calls ``record``; the daemon points ``sink`` at
    ``Telemetry.record_instance_fast_failure`` (``autoscaler_instance_fast_failures_total``)."""

    def __init__(self) -> None:
        self.sink: Callable[[str, str], None] | None = None
        self.counts: dict[tuple[str, str], int] = {}

    def record(self, pool: str, group: str) -> None:
        key = (pool, group)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.sink is not None:
            self.sink(pool, group)


class Telemetry(Protocol):
    def record_observation(self, pool: str, obs: Observation) -> None: ...

    def record_fleet(self, pool: str, fleet: FleetState) -> None: ...

    def record_decision(self, decision: Decision) -> None: ...

    def record_saturation(self, pool: str, saturated: bool) -> None:
        """Whether the pool is at ``capacity.max`` while its oldest wait exceeds
        ``sla.max_wait`` (recorded every decided tick, so it clears on its own)."""

    def record_scale_action(self, decision: Decision) -> None:
        """A decision of which at least one group's resize the provider accepted (counted once
        per decision; dry runs, refused and still pending calls do not count)."""

    def record_provider_error(self, pool: str, group: str, operation: str, error: str) -> None:
        """A failed provider call; ``error`` is the class label (``throttled``, ``denied``...,
        ``overdue`` for a call past its deadline, ``unexpected`` for an adapter bug)."""

    def record_tick(self, duration_s: float) -> None: ...

    def record_tick_overrun(self, skipped_slots: int) -> None: ...

    def record_observation_invalid(self, pool: str, reason: str) -> None:
        """A source saw an implausible enqueue time (``reason`` from
        ``autoscaler.core.plausibility.REASONS``) and reported the wait as unknown."""

    def record_instance_fast_failure(self, pool: str, group: str) -> None:
        """An instance of the group exited on its own right after its start (a crash loop
        in the making: the provider backs off and may report the group unavailable)."""


class NullTelemetry:
    """Records nothing: the simulator and one-shot runs."""

    def record_observation(self, pool: str, obs: Observation) -> None:
        return None

    def record_fleet(self, pool: str, fleet: FleetState) -> None:
        return None

    def record_decision(self, decision: Decision) -> None:
        return None

    def record_saturation(self, pool: str, saturated: bool) -> None:
        return None

    def record_scale_action(self, decision: Decision) -> None:
        return None

    def record_provider_error(self, pool: str, group: str, operation: str, error: str) -> None:
        return None

    def record_tick(self, duration_s: float) -> None:
        return None

    def record_tick_overrun(self, skipped_slots: int) -> None:
        return None

    def record_observation_invalid(self, pool: str, reason: str) -> None:
        return None

    def record_instance_fast_failure(self, pool: str, group: str) -> None:
        return None
