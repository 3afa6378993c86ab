"""Which groups the allocator must route around: capacity holds and the boot watchdog.

Two ways a group becomes unavailable, both ending in the same hold:

- its provider reports failed launches (a describe with ``available`` false, or a resize that
  raises ``CapacityUnavailable``: the daemon's actuator marks that one);
- its instances stay booting or pending past the pool's ``boot_timeout`` (``BootWatch``): a
  cloud that accepted a size but cannot bring instances up (a GPU zone out of stock that
  reports nothing, pods that never schedule) is a capacity failure in all but name.

A hold (``Holds``) lasts ``first_s`` (60 s), doubles each time the group fails again within
``cap_s`` of its last hold ending, up to ``cap_s`` (15 min), and starts over once the group
has gone ``cap_s`` without failing: a stockout is probed rarely instead of every tick. While
held, the group keeps what runs and gets nothing more (``autoscaler.core.allocator``), so its
shortfall lands on the next group in the tick that marked it.

Pure and clock-free (times are arguments): the daemon's loop and the simulator's fleet share
it, keyed by ``GroupId`` and by group name respectively. The shell logs the marks it returns.

Not guaranteed: ``BootWatch`` sees counts, not instances. It times the oldest wait since the
group last made progress (an instance came up, or nothing was waiting), so one instance stuck
while its siblings keep coming up is not caught until they stop; a group scaled up in steps
is timed from the later steps once the first ones run (a later detection, never an early one).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, TypeVar

from autoscaler.core.model import FleetState, GroupState

K = TypeVar("K", bound=Hashable)

Cause = Literal["capacity", "boot_timeout"]


@dataclass(frozen=True, slots=True)
class Hold:
    until: float
    reason: str
    hold_s: float


@dataclass(slots=True)
class Holds(Generic[K]):
    """Groups held unavailable: until when, and why (see the module docstring)."""

    first_s: float = 60.0
    cap_s: float = 900.0
    marks: dict[K, Hold] = field(default_factory=dict)

    def mark(self, key: K, now: float, reason: str) -> float:
        """Hold ``key`` from ``now``; returns the hold's length in seconds."""
        previous = self.marks.get(key)
        if previous is None or now - previous.until > self.cap_s:
            hold = self.first_s
        else:
            hold = min(self.cap_s, 2 * previous.hold_s)
        self.marks[key] = Hold(now + hold, reason, hold)
        return hold

    def reason(self, key: K, now: float) -> str | None:
        """The reason while the hold lasts, else None."""
        mark = self.marks.get(key)
        if mark is None or now >= mark.until:
            return None
        return mark.reason


@dataclass(slots=True)
class BootWatch(Generic[K]):
    """Times how long each group has had instances waiting (pending or booting) without any
    coming up; ``observe`` says when that exceeds ``timeout_s``."""

    timeout_s: float
    _since: dict[K, float] = field(default_factory=dict)
    _running: dict[K, int] = field(default_factory=dict)

    def observe(self, key: K, state: GroupState, now: float) -> str | None:
        """Feed one describe of the group; the reason when it has timed out, else None.

        The clock restarts when it fires, so a group whose stuck instances cannot be withdrawn
        is reported once per ``timeout_s``, not every tick."""
        waiting = state.pending + state.booting
        if waiting == 0:
            self._since.pop(key, None)
            self._running[key] = state.running
            return None
        since = self._since.get(key)
        if since is None or state.running > self._running.get(key, state.running):
            since = now  # something came up: the group makes progress
        self._running[key] = state.running
        if now - since > self.timeout_s:
            self._since[key] = now
            return (f"boot timeout: {waiting} instance(s) not running after "
                    f"{self.timeout_s:g}s")
        self._since[key] = since
        return None

    def timing(self) -> dict[K, tuple[float, int]]:
        """Each group being timed: since when it waits without progress, and how many ran
        then (saved across a restart, so a restart does not restart the clock)."""
        return {key: (since, self._running.get(key, 0)) for key, since in self._since.items()}

    def resume(self, key: K, since: float, running: int) -> bool:
        """Adopt a saved timing for a group this watch does not time yet; whether it did."""
        if key in self._since:
            return False
        self._since[key], self._running[key] = since, running
        return True


@dataclass(frozen=True, slots=True)
class Marked(Generic[K]):
    """A hold started by ``overlay``, for the shell to log."""

    key: K
    reason: str
    hold_s: float
    cause: Cause


def overlay(
    groups: Sequence[tuple[K, GroupState]],
    now: float,
    holds: Holds[K],
    watch: BootWatch[K] | None = None,
) -> tuple[FleetState, list[Marked[K]]]:
    """The fleet as the allocator must see it at ``now``: every held group unavailable with
    its hold's reason (even if a describe says otherwise in between, so the allocation does
    not flap back every tick), and new holds for groups that report failed launches or time
    out booting."""
    states: list[GroupState] = []
    marked: list[Marked[K]] = []
    for key, state in groups:
        held = holds.reason(key, now)
        stuck = watch.observe(key, state, now) if watch is not None else None
        if held is None:
            cause: Cause | None = None
            if not state.available:
                held, cause = state.reason or "the provider reports failed launches", "capacity"
            elif stuck is not None:
                held, cause = stuck, "boot_timeout"
            if held is not None and cause is not None:
                marked.append(Marked(key, held, holds.mark(key, now, held), cause))
        if held is not None and state.available:
            state = replace(state, available=False, reason=held)
        states.append(state)
    return FleetState(tuple(states)), marked
