"""Per-group actuators: one long-lived task per group carries out the latest target.

The tick never awaits these tasks: it ``submit``s a target and moves on, so a slow or throttled
group never delays another pool. Each actuator:

- keeps only the latest target: a newer one replaces a queued one (never a call in progress);
- calls ``resize`` with its own deadline, and never cancels a call midway: an overdue call is
  logged (``resize_overdue``), left to finish, and its late outcome logged; the group's next
  describe shows what it did. No second call on the same group starts before it ends;
- retries by class of error (``autoscaler.ports.errors``): exponential backoff with jitter for
  ``Transient``/``Conflict``/unclassified, at least ``retry_after_s`` for ``Throttled``, a long
  backoff logged once per change for ``Denied``/``NotFound``; ``CapacityUnavailable`` is not
  retried but holds the group unavailable (with the reason) in ``Unavailability``, and its
  outcome makes the loop re-allocate the pool's decision at once, so the shortfall lands on
  the next group without waiting for the next tick;
- reports every final outcome through a callback; the loop (never this task) folds successes
  into controller state.

Not guaranteed: a target accepted by the cloud but not yet visible in its describe may be sent
again on the next tick (``resize`` is idempotent, so this costs an API call, not a change).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from autoscaler.core.availability import Holds
from autoscaler.core.model import Decision
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import (
    CapacityUnavailable,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
    error_kind,
)
from autoscaler.ports.provider import AccountClient, GroupId
from autoscaler.ports.telemetry import Telemetry
from autoscaler.runtime.gate import ActuationGate, may_actuate, why_closed

log = structlog.get_logger("autoscaler.runtime")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between attempts on one group, in seconds of the loop clock."""

    base_s: float = 1.0
    cap_s: float = 60.0
    denied_s: float = 300.0
    unavailable_s: float = 60.0
    unavailable_cap_s: float = 900.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential with jitter in [50 %, 100 %]: spreads retries of many groups that
        failed together, and never retries sooner than half the nominal step."""
        nominal = min(self.cap_s, self.base_s * 2.0 ** attempt)
        return nominal * rng.uniform(0.5, 1.0)


class Unavailability(Holds[GroupId]):
    """Groups held unavailable after a capacity failure: until when, and why (the hold and
    its backoff are ``autoscaler.core.availability.Holds``, shared with the simulator).

    Marked by an actuator on ``CapacityUnavailable``, or by the loop when a describe first
    reports a group unavailable (a cloud that accepted a size it cannot launch) or its boot
    watchdog fires. The hold starts at ``unavailable_s`` and doubles (capped) when the group
    fails again soon after its last hold ended, so a stockout is probed rarely instead of every
    tick; it starts over once the group has gone ``unavailable_cap_s`` without failing. A
    successful resize does not end a hold: a resize down to what runs succeeds during a
    stockout too.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(policy.unavailable_s, policy.unavailable_cap_s)


@dataclass(frozen=True, slots=True)
class Ticket:
    """Why a target was submitted: the pool's decision (the loop calls ``applied`` with it)."""

    pool: str
    decision: Decision
    seq: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one submission: accepted (``error`` None) or given up on."""

    group: GroupId
    target: int
    ticket: Ticket
    error: BaseException | None = None
    late: bool = False


@dataclass(slots=True)
class _Work:
    target: int
    ticket: Ticket
    request_id: str


class GroupActuator:
    """The one task that resizes one group (see the module docstring)."""

    def __init__(
        self,
        group: GroupId,
        account: str,
        client: Callable[[], AccountClient | None],
        clock: Clock,
        telemetry: Telemetry,
        unavailability: Unavailability,
        on_outcome: Callable[[Outcome], None],
        *,
        deadline_s: float,
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        gate: ActuationGate | None = None,
    ) -> None:
        self.group = group
        self._gate = gate
        """Asked before each resize; a config reload swaps it (``retarget``)."""
        self.account = account
        self._client = client
        self._clock = clock
        self._telemetry = telemetry
        self._unavailability = unavailability
        self._on_outcome = on_outcome
        self.deadline_s = deadline_s
        self.policy = policy or RetryPolicy()
        self._rng = random.Random(seed if seed is not None else str(group))
        self._wanted: _Work | None = None
        self._current: _Work | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._reported = asyncio.Event()
        self._reported.set()
        self._call_future: asyncio.Future[None] | None = None
        self._last_refusal: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the loop's side

    @property
    def busy_with(self) -> int | None:
        """The target being worked on or queued (the newest), if any."""
        work = self._wanted or self._current
        return None if work is None else work.target

    def submit(self, target: int, ticket: Ticket) -> None:
        """Make ``target`` the next one; replaces a queued target, not a call in progress."""
        if self._wanted is None and self._current is not None and (
            self._current.target == target
        ):
            return  # that very target is being carried out
        replaced = self._wanted
        if replaced is not None and replaced.target == target:
            replaced.ticket = ticket  # same target: keep its request id (one change)
            return
        if replaced is not None:
            log.info("resize_superseded", group=str(self.group), old_target=replaced.target,
                     new_target=target)
        self._wanted = _Work(target, ticket, str(uuid.uuid4()))
        self._idle.clear()
        self._reported.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"actuator:{self.group}")
            self._task.add_done_callback(self._guard)

    def _guard(self, task: asyncio.Task[None]) -> None:
        """An actuator that dies of a bug says so; the next submit starts a new task."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("actuator_failed", group=str(self.group), error=repr(exc), exc_info=exc)
            self._current = None
            self._idle.set()
            self._reported.set()

    async def settled(self) -> None:
        """Wait until nothing is queued or in progress: every target accepted or dropped.
        A group whose calls keep failing never settles: use ``reported`` there."""
        await self._idle.wait()

    def waiting(self, first_outcome: bool = False) -> bool:
        """Whether ``settled()`` (or with ``first_outcome``, ``reported()``) would wait."""
        event = self._reported if first_outcome else self._idle
        return not event.is_set()

    async def reported(self) -> None:
        """Wait until the latest submission has had at least one outcome (``--once``)."""
        await self._reported.wait()

    def retarget(self, gate: ActuationGate) -> None:
        """Use ``gate`` from the next resize on (a config reload rebuilt the gate's wrappers:
        pauses, budgets); a call in progress is not affected."""
        self._gate = gate

    async def stop(self, timeout_s: float) -> None:
        """Stop retrying. A call in progress is not cancelled midway: it gets up to
        ``timeout_s`` to finish, then is abandoned (its outcome is never known here)."""
        task, self._task = self._task, None
        self._wanted = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        call = self._call_future
        if call is not None and not call.done():
            done, _ = await asyncio.wait({call}, timeout=timeout_s)
            if not done:
                log.warning("resize_abandoned", account=self.account, group=str(self.group))
                call.add_done_callback(self._abandoned_outcome)

    def _abandoned_outcome(self, call: asyncio.Future[None]) -> None:
        """The late end of an abandoned call (often the client closing under it): logged,
        so that asyncio never prints an unretrieved exception outside the JSON log."""
        error = None if call.cancelled() else call.exception()
        log.info("resize_abandoned_outcome", account=self.account, group=str(self.group),
                 error=None if error is None else str(error))

    # ------------------------------------------------------------------ the task

    async def _run(self) -> None:
        attempt = 0
        hold_until = 0.0
        while True:
            if self._wanted is None:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = hold_until - self._clock.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # a newer submit waits the hold-off too
                continue
            work, self._wanted = self._wanted, None
            if self._gate is not None and not await may_actuate(self._gate, self.group.pool):
                log.warning("resize_dropped", group=str(self.group), target=work.target,
                            reason=why_closed(self._gate, self.group.pool) or "not_confirmed")
                self._reported.set()
                continue  # a deposed leader's queued resize is never carried out
            self._current = work
            try:
                error, late = await self._call(work)
            finally:
                self._current = None
            self._reported.set()
            hold = self._settle(work, error, late, attempt)
            if hold is None:
                attempt = 0
            else:
                attempt += 1
                hold_until = self._clock.monotonic() + hold
                if self._wanted is None:
                    self._wanted = work  # retry this target unless a newer one came

    async def _call(self, work: _Work) -> tuple[BaseException | None, bool]:
        client = self._client()
        if client is None:
            return Transient("account not started", account=self.account,
                             group=str(self.group), operation="resize"), False
        call = asyncio.ensure_future(client.resize(self.group, work.target, work.request_id))
        self._call_future = call
        done, _ = await asyncio.wait({call}, timeout=self.deadline_s)
        late = not done
        if late:
            log.warning("resize_overdue", account=self.account, group=str(self.group),
                        target=work.target, deadline_s=self.deadline_s,
                        request_id=work.request_id)
            self._telemetry.record_provider_error(
                work.ticket.pool, self.group.group, "resize", "overdue")
            await asyncio.wait({call})  # never cancelled midway: it finishes, then we go on
        if call.cancelled():
            return Transient("resize call was cancelled", account=self.account,
                             group=str(self.group), operation="resize"), late
        error = call.exception()
        if late:
            log.info("resize_late_outcome", account=self.account, group=str(self.group),
                     target=work.target, error=None if error is None else repr(error))
        return error, late

    def _settle(
        self, work: _Work, error: BaseException | None, late: bool, attempt: int
    ) -> float | None:
        """Log, count and report; returns the hold-off before the next attempt (None: done)."""
        pool, group = work.ticket.pool, self.group
        if error is None:
            if self._last_refusal is not None:
                log.info("resize_recovered", account=self.account, group=str(group))
                self._last_refusal = None
            self._on_outcome(Outcome(group, work.target, work.ticket, None, late))
            return None
        kind = error_kind(error)
        self._telemetry.record_provider_error(pool, group.group, "resize", kind)
        fields = dict(account=self.account, group=str(group), pool=pool, target=work.target,
                      error_class=kind, error=str(error))
        if isinstance(error, CapacityUnavailable):
            # Not retried: the next decision sees the group unavailable and moves the
            # shortfall elsewhere (and resizes this group down to what it holds).
            hold = self._unavailability.mark(group, self._clock.monotonic(), error.message)
            log.warning("group_unavailable", **fields, unavailable_for_s=hold)
            self._on_outcome(Outcome(group, work.target, work.ticket, error, late))
            return None
        if isinstance(error, Denied | NotFound):
            signature = (kind, str(error))
            if signature != self._last_refusal:  # once per change, not once per retry
                log.error("resize_refused", **fields, retry_in_s=self.policy.denied_s)
                self._last_refusal = signature
            self._on_outcome(Outcome(group, work.target, work.ticket, error, late))
            return self.policy.denied_s
        hold = self.policy.backoff(attempt, self._rng)
        if isinstance(error, Throttled) and error.retry_after_s is not None:
            hold = max(hold, error.retry_after_s)
        if not isinstance(error, ProviderError):
            log.error("resize_failed", **fields, retry_in_s=hold, exc_info=error)
        else:
            log.warning("resize_failed", **fields, retry_in_s=hold)
        self._on_outcome(Outcome(group, work.target, work.ticket, error, late))
        return hold
