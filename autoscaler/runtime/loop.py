"""The tick pipeline, and the interval grid that schedules ticks.

One tick: sample every queue and describe every account concurrently → decide every pool (the
pure core) → the cross-pool step → the actuation gate → submit targets to the per-group
actuators (``autoscaler.runtime.actuator``), without waiting for them. A pool whose fleet could
not be described is skipped for this tick: we never act on unknown fleet state.

Controller state is owned by this loop: actuators report outcomes, and the next tick (or
``settle``) folds each accepted decision in with ``PoolController.applied``.

Spot fallback: groups that report failed launches, refuse a resize with
``CapacityUnavailable`` or keep instances booting past the pool's ``boot_timeout`` are held
unavailable (``autoscaler.core.availability``); the allocator then gives their shortfall to
the next group in the same tick (a refused resize re-allocates the last decision at once,
without re-running the policy or the guards).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from autoscaler.core.availability import BootWatch, overlay
from autoscaler.core.model import Decision, FleetState, GroupState, Observation
from autoscaler.core.pipeline import ControllerState, PoolController
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import CapacityUnavailable, ProviderError, error_kind
from autoscaler.ports.provider import GroupId
from autoscaler.ports.source import QueueSampler
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.accounts import AccountRuntime
from autoscaler.runtime.actuator import (
    GroupActuator,
    Outcome,
    RetryPolicy,
    Ticket,
    Unavailability,
)
from autoscaler.runtime.crosspool import CrossPoolStep, TickView, identity_step
from autoscaler.runtime.gate import ActuationGate, OpenGate, open_for
from autoscaler.runtime.persistence import ControllerPersistence

log = structlog.get_logger("autoscaler.runtime")


@dataclass(slots=True)
class PoolRuntime:
    """A pool's controller, its groups (in config order) and its in-memory controller state."""

    name: str
    controller: PoolController
    groups: tuple[GroupId, ...]
    state: ControllerState
    applied_seq: int = 0
    """The newest decision (ticket number) folded in with ``applied``."""


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
    submitted: tuple[str, ...] = ()
    """Groups whose new target went to their actuator (not yet carried out).

    ``acted``: targets went through the gate to the actuators (a tick never waits for them);
    ``--once`` rewrites it to whether a provider accepted one, after waiting."""

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
            "errors": list(self.errors),
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
        accounts: Mapping[str, AccountRuntime],
        clock: Clock,
        telemetry: Telemetry,
        *,
        interval_s: float,
        gate: ActuationGate | None = None,
        cross_pool: CrossPoolStep = identity_step,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.pools = list(pools)
        self.samplers = list(samplers)
        self.accounts = dict(accounts)
        self.clock = clock
        self.telemetry = telemetry
        self.interval_s = interval_s
        self.gate: ActuationGate = gate or OpenGate()
        self.cross_pool = cross_pool
        self.retry = retry or RetryPolicy()
        self.unavailability = Unavailability(self.retry)
        self._account_of: dict[GroupId, AccountRuntime] = {
            g: a for a in self.accounts.values() for g in a.groups
        }
        self._by_name = {rt.name: rt for rt in self.pools}
        self.actuators: dict[GroupId, GroupActuator] = {}
        self._outcomes: list[Outcome] = []
        self._describe_errors: dict[GroupId, str] = {}
        self._watches: dict[str, BootWatch[GroupId]] = {}
        self._last: dict[str, tuple[Decision, FleetState]] = {}
        """Per pool, the latest decision sent to the gate and the fleet it was made on."""
        self._seq = 0
        self._saturated: dict[str, str] = {}
        """Pools saturated at their last decision, with the cause (``capacity_max`` or
        ``budget_cap``): a warning when one starts or its cause changes, info at its end."""
        self.persistence: ControllerPersistence | None = None  # controller.state_store
        self.tick_lock = asyncio.Lock()
        """Held by ``run`` for each tick: a config reload swaps parts only between ticks."""

    @property
    def dry_run(self) -> bool:
        return not self.gate.is_open()

    def actuator(self, group: GroupId) -> GroupActuator:
        actuator = self.actuators.get(group)
        if actuator is None:
            account = self._account_of[group]
            actuator = GroupActuator(
                group, account.name, account.ready, self.clock, self.telemetry,
                self.unavailability, self._on_outcome,
                deadline_s=account.spec.resize_timeout_s, policy=self.retry, gate=self.gate,
            )
            self.actuators[group] = actuator
        return actuator

    async def tick(self) -> list[PoolTick]:
        started = self.clock.monotonic()
        if self.persistence is not None:
            await self.persistence.load(  # once, before the first decision
                self.pools, holds=self.unavailability, samplers=self.samplers,
                watches=self._watches)
        self.fold_outcomes()
        observations, described = await asyncio.gather(self._sample(), self._describe())
        results: dict[str, PoolTick] = {}
        decided: dict[str, Decision] = {}
        fleets: dict[str, FleetState] = {}
        for rt in self.pools:
            tick, fleet = self._decide(rt, observations.get(rt.name), described)
            results[rt.name] = tick
            if tick.decision is not None and fleet is not None:
                decided[rt.name], fleets[rt.name] = tick.decision, fleet
        view = TickView(decided, fleets, observations)
        carried = await self.cross_pool(view)
        for name, decision in carried.items():
            if decision is not decided[name]:  # a budget cap changed it: export what stands
                self.telemetry.record_decision(decision)
            results[name] = self._actuate(results[name], decision, fleets[name])
        for name, wanted in decided.items():  # after the caps: a held pool is saturated too
            self._saturation(self._by_name[name], observations[name], wanted,
                             carried.get(name, wanted))
        await self.save_state()
        self.telemetry.record_tick(self.clock.monotonic() - started)
        return [results[rt.name] for rt in self.pools]

    async def run(
        self, stop: asyncio.Event, on_tick: Callable[[list[PoolTick]], None] | None = None
    ) -> None:
        """Tick on the grid until ``stop`` is set; a tick in progress always completes.

        ``on_tick`` sees every tick's results (the demo's live table)."""
        grid = TickGrid(self.clock.monotonic(), self.interval_s)
        while not stop.is_set():
            async with self.tick_lock:
                results = await self.tick()
            if on_tick is not None:
                on_tick(results)
            if grid.interval != self.interval_s:  # a reload changed it: a new grid from now
                grid = TickGrid(self.clock.monotonic(), self.interval_s)
            due, skipped = grid.advance(self.clock.monotonic())
            if skipped:
                log.warning("tick_overrun", skipped_slots=skipped, interval_s=self.interval_s)
                self.telemetry.record_tick_overrun(skipped)
            delay = due - self.clock.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def reconfigure(
        self, pools: Sequence[PoolRuntime], samplers: Sequence[QueueSampler],
        accounts: Mapping[str, AccountRuntime], *, interval_s: float, cross_pool: CrossPoolStep,
        persistence: ControllerPersistence | None, gate: ActuationGate,
    ) -> None:
        """Swap in a reloaded config's parts (``autoscaler.runtime.reload``, under
        ``tick_lock``). Per-pool memory of pools that stay is kept; that of removed pools and
        groups is dropped. Actuators are the caller's: it stops those it retires; the others
        ask the new gate from their next resize on."""
        self.gate = gate
        for actuator in self.actuators.values():
            actuator.retarget(gate)
        self.pools, self.samplers, self.accounts = list(pools), list(samplers), dict(accounts)
        self._account_of = {g: a for a in self.accounts.values() for g in a.groups}
        self._by_name = {rt.name: rt for rt in self.pools}
        for table in (self._watches, self._last):
            for name in set(table) - set(self._by_name):
                del table[name]
        self._saturated = {p: c for p, c in self._saturated.items() if p in self._by_name}
        for gid in set(self._describe_errors) - set(self._account_of):
            del self._describe_errors[gid]
        self.interval_s, self.cross_pool, self.persistence = interval_s, cross_pool, persistence

    # ------------------------------------------------------------------ outcomes

    def fold_outcomes(self) -> list[Outcome]:
        """Fold the actuators' outcomes into controller state (here, in the loop: never in an
        actuator task). ``applied`` is called once per decision, at its first accepted group;
        a scale action is counted once per decision too."""
        outcomes, self._outcomes[:] = list(self._outcomes), []
        for outcome in outcomes:
            ticket = outcome.ticket
            rt = self._by_name.get(ticket.pool)
            # Tickets are numbered in submission order: an older decision accepted after a
            # newer one was folded in changes nothing more.
            if outcome.error is not None or rt is None or ticket.seq <= rt.applied_seq:
                continue
            rt.state = rt.controller.applied(rt.state, ticket.decision)
            rt.applied_seq = ticket.seq
            self.telemetry.record_scale_action(ticket.decision)
        return outcomes

    async def settle(self, *, first_outcome: bool = False) -> list[Outcome]:
        """Wait for the actuators (``--once``, tests): until every target is accepted or
        dropped, or with ``first_outcome`` until each has had one attempt. Then fold."""
        while True:  # an outcome may submit more (a capacity failure moves the shortfall)
            actuators = list(self.actuators.values())
            await asyncio.gather(*(a.reported() if first_outcome else a.settled()
                                   for a in actuators))
            if len(self.actuators) == len(actuators) and not any(
                a.waiting(first_outcome) for a in actuators
            ):
                return self.fold_outcomes()

    async def save_state(self, *, every_pool: bool = False) -> None:
        """Save the pools' state (the changed and the due ones; ``every_pool`` at a clean
        stop). Only the actor writes: a standby (or a dry run) behind a closed gate keeps its
        own warm state in memory but must not overwrite the state of the daemon acting."""
        if self.persistence is None:
            return
        if not self.gate.is_open():
            self.persistence.forget_written()  # another actor writes meanwhile
            return
        if every_pool:
            self.persistence.forget_written()
        await self.persistence.save(  # bounded; a failure is logged, not raised
            self.pools, holds=self.unavailability, samplers=self.samplers,
            watches=self._watches)

    async def stop_actuators(self, timeout_s: float) -> None:
        await asyncio.gather(*(a.stop(timeout_s) for a in self.actuators.values()))

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

    async def _describe(self) -> dict[GroupId, GroupState | ProviderError]:
        accounts = list(self.accounts.values())
        results = await asyncio.gather(*(a.describe() for a in accounts))
        merged: dict[GroupId, GroupState | ProviderError] = {}
        for result in results:
            merged.update(result)
        return merged

    def _provider_error(self, pool: str, group: GroupId, exc: ProviderError) -> str:
        """Count every failed describe; log it when it differs from the group's last one (an
        account down for an hour at 1 s ticks is one error line, not 3,600)."""
        kind = error_kind(exc)
        self.telemetry.record_provider_error(pool, group.group, exc.operation or "describe", kind)
        if self._describe_errors.get(group) != str(exc):
            self._describe_errors[group] = str(exc)
            log.error("provider_error", pool=pool, group=group.group, account=exc.account,
                      operation=exc.operation, error_class=kind, error=str(exc))
        return str(exc)

    def _fleet(self, rt: PoolRuntime, described: Mapping[GroupId, GroupState]) -> FleetState:
        """The pool's groups as described, with the capacity holds laid over (see
        ``autoscaler.core.availability.overlay``): a group that reports failed launches, or
        whose instances stay booting past the pool's ``boot_timeout``, is held unavailable
        for the backoff, and this tick's decision already routes its shortfall elsewhere."""
        watch = self._watches.get(rt.name)
        timeout = rt.controller.spec.capacity.boot_timeout_s
        if watch is None and timeout is not None:
            watch = self._watches[rt.name] = BootWatch(timeout)
        fleet, marked = overlay([(gid, described[gid]) for gid in rt.groups],
                                self.clock.monotonic(), self.unavailability, watch)
        for mark in marked:
            log.warning("group_unavailable", pool=rt.name, group=str(mark.key),
                        error_class="capacity_unavailable" if mark.cause == "capacity"
                        else "boot_timeout", error=mark.reason, unavailable_for_s=mark.hold_s)
        return fleet

    def _on_outcome(self, outcome: Outcome) -> None:
        """An actuator's outcome: queued for ``fold_outcomes``; a capacity failure also moves
        the pool's shortfall to its next group at once (the actuator marked the hold), rather
        than a tick later."""
        self._outcomes.append(outcome)
        if isinstance(outcome.error, CapacityUnavailable):
            self._reallocate(outcome.ticket.pool, str(outcome.group))

    def _reallocate(self, pool: str, group: str) -> None:
        """Re-run the allocator on the pool's last decision and fleet with the new hold laid
        over, and submit what changed. The policy and guards are not re-run: the desired total
        stands, only its spread changes."""
        last = self._last.get(pool)
        rt = self._by_name.get(pool)
        if last is None or rt is None:
            return
        decision, fleet = last
        now = self.clock.monotonic()
        held = FleetState(tuple(
            replace(g, available=False, reason=reason)
            if g.available and (reason := self.unavailability.reason(gid, now)) is not None
            else g
            for gid, g in zip(rt.groups, fleet.groups, strict=True)
        ))
        targets = rt.controller.allocator.allocate(decision.desired, held)
        if targets == dict(decision.targets):
            return
        log.info("shortfall_moved", pool=pool, unavailable_group=group,
                 old_targets=dict(decision.targets), targets=targets)
        moved = replace(decision, targets=targets,
                        reason=f"{decision.reason}; {group} unavailable: shortfall moved")
        self._actuate(PoolTick(pool, None, held), moved, held)

    def _decide(
        self, rt: PoolRuntime, obs: Observation | None,
        described: Mapping[GroupId, GroupState | ProviderError],
    ) -> tuple[PoolTick, FleetState | None]:
        if obs is None:
            log.error("observation_missing", pool=rt.name)
            return PoolTick(rt.name, None, None, errors=("no observation",)), None
        self.telemetry.record_observation(rt.name, obs)
        errors = [self._provider_error(rt.name, g, r) for g in rt.groups
                  if isinstance(r := described[g], ProviderError)]
        if errors:
            return PoolTick(rt.name, obs, None, errors=tuple(errors)), None
        for gid in rt.groups:
            if self._describe_errors.pop(gid, None) is not None:
                log.info("provider_recovered", pool=rt.name, group=gid.group)
        fleet = self._fleet(rt, {g: r for g in rt.groups
                                 if isinstance(r := described[g], GroupState)})
        self.telemetry.record_fleet(rt.name, fleet)
        try:
            decision, rt.state = rt.controller.decide(obs, fleet, rt.state)
        except Exception as exc:  # a policy plugin's bug must not stop the other pools
            log.error("decision_failed", pool=rt.name, error=repr(exc), exc_info=exc)
            return PoolTick(rt.name, obs, fleet, errors=(f"decision failed: {exc!r}",)), None
        self.telemetry.record_decision(decision)
        return PoolTick(rt.name, obs, fleet, decision), fleet

    def _saturation(self, rt: PoolRuntime, obs: Observation, wanted: Decision,
                    decision: Decision) -> None:
        """Saturated: the oldest wait exceeds ``sla.max_wait`` while the decision that stands
        is held back, either pinned at ``capacity.max`` (cause ``capacity_max``) or cut below
        what the pool decided by a budget's hard cap (``budget_cap``): more instances would
        help, a bound forbids them. An unknown wait is not saturation. Judged on the decision,
        not on running instances: a pool still booting towards max whose waits exceed the SLA
        is already stuck as far as the operator can act."""
        spec = rt.controller.spec
        wait = obs.oldest_wait_s
        cause = ""
        if wait is not None and wait > spec.sla.max_wait_s:
            if decision.desired >= spec.capacity.max:
                cause = "capacity_max"
            elif "budget_capped_from" in decision.terms and decision.desired < wanted.desired:
                cause = "budget_cap"
        self.telemetry.record_saturation(rt.name, bool(cause))
        if cause and self._saturated.get(rt.name) != cause:
            self._saturated[rt.name] = cause
            log.warning("pool_saturated", pool=rt.name, cause=cause, desired=decision.desired,
                        wanted=wanted.desired, max_instances=spec.capacity.max,
                        oldest_wait_s=wait, max_wait_s=spec.sla.max_wait_s,
                        recommended=decision.terms.get("recommended"))
        elif not cause and rt.name in self._saturated:
            del self._saturated[rt.name]
            log.info("pool_saturation_ended", pool=rt.name, desired=decision.desired,
                     oldest_wait_s=wait)

    def _actuate(self, tick: PoolTick, decision: Decision, fleet: FleetState) -> PoolTick:
        """Through the gate, to the actuators: the groups whose target differs from their
        described size, or from what their actuator is already carrying out."""
        rt = self._by_name[tick.pool]
        plan = {}
        for gid in rt.groups:
            target = decision.targets.get(gid.group)
            state = fleet.group(gid.group)
            if target is None or state is None:
                continue
            busy = self.actuators[gid].busy_with if gid in self.actuators else None
            if target != state.desired or (busy is not None and busy != target):
                plan[gid] = target
        tick = replace(tick, decision=decision, changed=bool(plan))
        self._last[rt.name] = (decision, fleet)
        if not plan:
            return tick
        obs = tick.observation
        log.info(
            "decision", pool=rt.name, current=decision.current, desired=decision.desired,
            direction=decision.direction, targets=dict(decision.targets), reason=decision.reason,
            terms=dict(decision.terms), depth=obs.depth if obs else None,
            oldest_wait_s=obs.oldest_wait_s if obs else None, dry_run=not self.gate.is_open(),
        )
        if not open_for(self.gate, rt.name):  # a dry run, a standby, or a paused pool
            return tick
        self._seq += 1
        ticket = Ticket(rt.name, decision, self._seq)
        for gid, target in plan.items():
            self.actuator(gid).submit(target, ticket)
        return replace(tick, acted=True, submitted=tuple(g.group for g in plan))
