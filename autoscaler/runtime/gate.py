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


@runtime_checkable
class PoolGate(ActuationGate, Protocol):
    """A gate that can also be closed for single pools (``autoscaler pause``)."""

    def is_open_for(self, pool: str) -> bool:
        ...

    def why_closed_for(self, pool: str) -> str:
        ...


def open_for(gate: ActuationGate, pool: str) -> bool:
    """Whether ``pool``'s decisions may be carried out now."""
    return gate.is_open_for(pool) if isinstance(gate, PoolGate) else gate.is_open()


def why_closed(gate: ActuationGate, pool: str | None) -> str:
    """Why ``pool``'s resize was not carried out ("" when the gate is open for it), for the
    ``resize_dropped`` log line: a pool gate names its own pool's reason, not another's."""
    if pool is not None and isinstance(gate, PoolGate):
        return gate.why_closed_for(pool)
    return gate.why_closed


async def may_actuate(gate: ActuationGate, pool: str | None = None) -> bool:
    """Asked by a group actuator right before each resize call."""
    if not (gate.is_open() if pool is None else open_for(gate, pool)):
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
