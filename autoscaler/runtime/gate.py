"""The actuation gate: the one place that decides whether decisions may be carried out.

Everything up to the gate (sample, describe, decide, the cross-pool step) runs the same in
every mode; the gate only says whether targets go to the actuators. ``--dry-run`` is one
implementation; leader election will be another (kopf's peering toggles a ``paused`` flag that
every worker honours: the same idea).
"""

from __future__ import annotations

from typing import Protocol


class ActuationGate(Protocol):
    def is_open(self) -> bool:
        """True when this replica may resize groups now."""
        ...

    @property
    def why_closed(self) -> str:
        """A short reason for logs while closed (``dry_run``, ``not_leader``)."""
        ...

    async def confirm(self) -> bool:
        """Asked by a group actuator right before each resize call: whether it may go ahead
        (leader election reads its fencing token here; a queued resize is dropped if not)."""
        ...


class OpenGate:
    """Always open: a single daemon that owns its fleets."""

    def is_open(self) -> bool:
        return True

    async def confirm(self) -> bool:
        return True

    @property
    def why_closed(self) -> str:
        return ""


class DryRunGate:
    """Never open: decide and log, never resize (``--dry-run``)."""

    def is_open(self) -> bool:
        return False

    async def confirm(self) -> bool:
        return False

    @property
    def why_closed(self) -> str:
        return "dry_run"
