"""The actuation gate: the one place that decides whether decisions may be carried out.

Everything up to the gate (sample, describe, decide, the cross-pool step) runs the same in
every mode; the gate only says whether targets go to the actuators. ``--dry-run`` is one
implementation; leader election will be another (kopf's peering toggles a ``paused`` flag that
every worker honours: the same idea).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class ActuationGate(Protocol):
    def is_open(self) -> bool:
        """True when this replica may resize groups now."""
        ...

    @property
    def why_closed(self) -> str:
        """A short reason for logs while closed (``dry_run``, ``not_leader``)."""
        ...


@runtime_checkable
class FencedGate(ActuationGate, Protocol):
    """A gate that can confirm with its authority right before each resize call (leader
    election reads its fencing token there), so a deposed actor's queued resizes are dropped."""

    async def confirm(self) -> bool:
        ...


async def may_actuate(gate: ActuationGate) -> bool:
    """Asked by a group actuator right before each resize call."""
    if not gate.is_open():
        return False
    return await gate.confirm() if isinstance(gate, FencedGate) else True


class OpenGate:
    """Always open: a single daemon that owns its fleets."""

    def is_open(self) -> bool:
        return True

    @property
    def why_closed(self) -> str:
        return ""


class DryRunGate:
    """Never open: decide and log, never resize (``--dry-run``)."""

    def is_open(self) -> bool:
        return False

    @property
    def why_closed(self) -> str:
        return "dry_run"
