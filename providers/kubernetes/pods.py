"""Pure classification of a workload's pods into the meanings of ``GroupState``.

No SDK and no I/O here: the client turns each pod object of the API into a ``PodView`` and this
module counts them, so the rules are tested without a cluster.

The rules, in order (a pod is counted once):

- ``metadata.deletionTimestamp`` set → *draining* (Kubernetes is terminating it: it has left
  the ReplicaSet's count and gets no new traffic once its endpoint is removed);
- phase ``Succeeded``/``Failed`` → not counted (a dead pod the controller replaces);
- condition ``PodScheduled=False`` with reason ``Unschedulable`` → *unschedulable*: no node
  fits (typically no GPU node free); it is part of ``pending``, and once ANY such pod has been
  seen unschedulable for longer than the group's ``pending_timeout`` the group is reported
  unavailable with the scheduler's message as the reason;
- condition ``Ready=True`` → *running*;
- anything else (scheduled, image pulling, containers starting, not ready yet) → *booting*.

``pending`` is the part of ``desired`` (``spec.replicas``) with no scheduled pod: the
unschedulable pods plus the replicas the controller has not created yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PodView:
    """What the counting rules need from one pod."""

    uid: str
    name: str
    phase: str
    deleting: bool
    ready: bool
    unschedulable: str | None = None
    """The scheduler's message when ``PodScheduled=False, reason=Unschedulable``, else None."""


@dataclass(frozen=True, slots=True)
class PodCounts:
    booting: int = 0
    running: int = 0
    draining: int = 0
    unschedulable: tuple[PodView, ...] = ()

    def pending(self, desired: int) -> int:
        """Replicas asked for with no pod scheduled yet (never negative)."""
        return max(0, desired - self.booting - self.running)


def count_pods(pods: Iterable[PodView]) -> PodCounts:
    booting = running = draining = 0
    unschedulable: list[PodView] = []
    for pod in pods:
        if pod.deleting:
            draining += 1
        elif pod.phase in ("Succeeded", "Failed"):
            continue
        elif pod.unschedulable is not None:
            unschedulable.append(pod)
        elif pod.ready:
            running += 1
        else:
            booting += 1
    return PodCounts(booting, running, draining, tuple(unschedulable))


class UnschedulableTracker:
    """When each pod was first seen unschedulable, on the provider's clock.

    The daemon's clock, not the pod's ``creationTimestamp`` or the condition's
    ``lastTransitionTime``: those are the API server's wall clock, and skew between it and the
    daemon would make the timeout fire early or never. The price: a restarted daemon starts
    counting again from its first describe, so a stockout is reported at most one
    ``pending_timeout`` later than it could have been.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def overdue(self, pods: Iterable[PodView], now: float, timeout_s: float) -> PodView | None:
        """Record the currently unschedulable pods (forgetting the others) and return one that
        has been unschedulable for at least ``timeout_s``, or None."""
        seen: dict[str, float] = {}
        worst: PodView | None = None
        for pod in pods:
            since = self._since.get(pod.uid, now)
            seen[pod.uid] = since
            if now - since >= timeout_s and worst is None:
                worst = pod
        self._since = seen
        return worst
