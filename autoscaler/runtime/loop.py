"""One control-loop tick, and the interval grid that schedules ticks.

A tick samples every queue sampler and describes every group concurrently, then runs each pool
through its ``PoolController`` (the pure core) and actuates. A pool whose fleet could not be
described is skipped for this tick: we never act on unknown fleet state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from autoscaler.core.model import Decision, FleetState, GroupState, Observation
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import Provider, ProviderError
from autoscaler.ports.source import QueueSampler
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.actuator import Actuator
from autoscaler.runtime.persistence import ControllerPersistence

log = structlog.get_logger("autoscaler.runtime")


@dataclass(slots=True)
class PoolRuntime:
    """A pool's controller, its providers by group name and its in-memory controller state."""

    name: str
    controller: PoolController
    providers: dict[str, Provider]
    actuator: Actuator
    state: ControllerState


@dataclass(frozen=True, slots=True)
class PoolTick:
    """What one tick did for one pool (``--once`` prints it; tests read it)."""

    pool: str
    observation: Observation | None
    fleet: FleetState | None
    decision: Decision | None = None
    changed: bool = False
    acted: bool = False
    errors: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        obs, decision = self.observation, self.decision
        return {
            "pool": self.pool,
            "depth": obs.depth if obs else None,
            "oldest_wait_s": obs.oldest_wait_s if obs else None,
            "in_flight": obs.in_flight if obs else None,
            "fresh": obs.fresh if obs else None,
            "current": decision.current if decision else None,
            "desired": decision.desired if decision else None,
            "reason": decision.reason if decision else "skipped: " + "; ".join(self.errors),
            "targets": dict(decision.targets) if decision else None,
            "terms": dict(decision.terms) if decision else None,
            "changed": self.changed,
            "acted": self.acted,
        }


@dataclass(slots=True)
class TickGrid:
    """Ticks at ``start + k * interval`` on the loop clock; an overrun skips missed slots."""

    start: float
    interval: float
    k: int = 0
    skipped_total: int = field(default=0)

    def advance(self, now: float) -> tuple[float, int]:
        """After a tick ends at ``now``: the next due time and how many slots were skipped."""
        k = self.k + 1
        if now > self.start + k * self.interval:
            k_late = math.floor((now - self.start) / self.interval) + 1
            skipped, k = k_late - k, k_late
        else:
            skipped = 0
        self.k = k
        self.skipped_total += skipped
        return self.start + k * self.interval, skipped


class ControlLoop:
    def __init__(
        self,
        pools: Sequence[PoolRuntime],
        samplers: Sequence[QueueSampler],
        clock: Clock,
        telemetry: Telemetry,
        *,
        interval_s: float,
        describe_timeout_s: float,
        dry_run: bool = False,
    ) -> None:
        self.pools = list(pools)
        self.samplers = list(samplers)
        self.clock = clock
        self.telemetry = telemetry
        self.interval_s = interval_s
        self.describe_timeout_s = describe_timeout_s
        self.dry_run = dry_run
        self.persistence: ControllerPersistence | None = None  # controller.state_store

    async def tick(self) -> list[PoolTick]:
        started = self.clock.monotonic()
        if self.persistence is not None:
            await self.persistence.load(self.pools)  # once, before the first decision
        observations, fleets = await asyncio.gather(self._sample(), self._describe())
        results = list(await asyncio.gather(*(
            self._pool_tick(rt, observations.get(rt.name), fleets[rt.name]) for rt in self.pools
        )))
        if self.persistence is not None:
            await self.persistence.save(self.pools)  # bounded; a failure is logged, not raised
        self.telemetry.record_tick(self.clock.monotonic() - started)
        return results

    async def run(
        self, stop: asyncio.Event, on_tick: Callable[[list[PoolTick]], None] | None = None
    ) -> None:
        """Tick on the grid until ``stop`` is set; a tick in progress always completes.

        ``on_tick`` sees every tick's results (the demo's live table)."""
        grid = TickGrid(self.clock.monotonic(), self.interval_s)
        while not stop.is_set():
            results = await self.tick()
            if on_tick is not None:
                on_tick(results)
            due, skipped = grid.advance(self.clock.monotonic())
            if skipped:
                log.warning("tick_overrun", skipped_slots=skipped, interval_s=self.interval_s)
                self.telemetry.record_tick_overrun(skipped)
            delay = due - self.clock.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    # ------------------------------------------------------------------ steps

    async def _sample(self) -> dict[str, Observation]:
        results = await asyncio.gather(
            *(s.sample() for s in self.samplers), return_exceptions=True
        )
        merged: dict[str, Observation] = {}
        for sampler, result in zip(self.samplers, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                log.error("sampler_error", sampler=type(sampler).__name__, error=repr(result))
                continue
            merged.update(result)
        return merged

    async def _describe(self) -> dict[str, list[GroupState | ProviderError]]:
        calls = [(rt.name, g, p) for rt in self.pools for g, p in rt.providers.items()]
        results = await asyncio.gather(*(self._describe_one(g, p) for _, g, p in calls))
        fleets: dict[str, list[GroupState | ProviderError]] = {rt.name: [] for rt in self.pools}
        for (pool, _, _), result in zip(calls, results, strict=True):
            fleets[pool].append(result)
        return fleets

    async def _describe_one(self, group: str, provider: Provider) -> GroupState | ProviderError:
        try:
            return await asyncio.wait_for(provider.describe(), self.describe_timeout_s)
        except ProviderError as exc:
            return exc
        except TimeoutError:
            return ProviderError(
                group, "describe", f"no answer within {self.describe_timeout_s:g}s"
            )
        except Exception as exc:  # an adapter bug must not stop the other pools
            return ProviderError(group, "describe", repr(exc))

    def _provider_error(self, pool: str, exc: ProviderError) -> str:
        log.error("provider_error", pool=pool, group=exc.group, operation=exc.operation,
                  retryable=exc.retryable, error=str(exc))
        self.telemetry.record_provider_error(pool, exc.group, exc.operation)
        return str(exc)

    async def _pool_tick(
        self, rt: PoolRuntime, obs: Observation | None, described: list[GroupState | ProviderError]
    ) -> PoolTick:
        if obs is None:
            log.error("observation_missing", pool=rt.name)
            return PoolTick(rt.name, None, None, errors=("no observation",))
        self.telemetry.record_observation(rt.name, obs)
        errors = [self._provider_error(rt.name, r) for r in described
                  if isinstance(r, ProviderError)]
        if errors:
            return PoolTick(rt.name, obs, None, errors=tuple(errors))
        fleet = FleetState(tuple(r for r in described if isinstance(r, GroupState)))
        self.telemetry.record_fleet(rt.name, fleet)
        try:
            decision, rt.state = rt.controller.decide(obs, fleet, rt.state)
        except Exception as exc:  # a policy plugin's bug must not stop the other pools
            log.error("decision_failed", pool=rt.name, error=repr(exc), exc_info=exc)
            return PoolTick(rt.name, obs, fleet, errors=(f"decision failed: {exc!r}",))
        changed = decision.changes(fleet)
        self.telemetry.record_decision(decision)
        if not changed:
            return PoolTick(rt.name, obs, fleet, decision)
        log.info(
            "decision", pool=rt.name, current=decision.current, desired=decision.desired,
            direction=decision.direction, targets=dict(decision.targets), reason=decision.reason,
            terms=dict(decision.terms), depth=obs.depth, oldest_wait_s=obs.oldest_wait_s,
            dry_run=self.dry_run,
        )
        if self.dry_run:
            return PoolTick(rt.name, obs, fleet, decision, changed=True)
        actuation = await rt.actuator.apply(decision, fleet)
        if actuation.resized:
            self.telemetry.record_scale_action(decision)
            rt.state = rt.controller.applied(rt.state, decision)
        failed = tuple(self._provider_error(rt.name, e) for e in actuation.errors)
        return PoolTick(rt.name, obs, fleet, decision, True, bool(actuation.resized), failed)
