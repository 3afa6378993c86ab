"""From a MIG's ``targetSize`` and its instances' ``currentAction`` to a ``GroupState``.

Pure: the client turns SDK objects into the plain values below, so the mapping is tested and
read without the SDK. The mapping, from the published ``ManagedInstance.currentAction`` enum
(Compute v1) and the group's ``currentActions`` summary:

============================================ ===================================================
``CREATING``, ``CREATING_WITHOUT_RETRIES``    ``pending`` while the VM does not exist yet (no
                                             ``instanceStatus``, or launches failing), else
                                             ``booting``
``RECREATING``, ``VERIFYING``, ``STARTING``,  ``booting``: a VM exists (billed) that the MIG
``RESUMING``, ``RESTARTING``                  does not yet consider done
``NONE``, ``REFRESHING``                      ``running`` (REFRESHING changes metadata without a
                                             stop); but ``NONE`` on a VM whose status is
                                             STOPPING/SUSPENDING is ``draining``, and on a
                                             STOPPED/SUSPENDED/TERMINATED one counts nowhere
``DELETING``, ``ABANDONING``, summary          ``draining``: leaving the group, no longer in
``stopping``/``suspending``                   ``targetSize``
unknown (a newer API value)                  ``booting``: exists, not known to serve
============================================ ===================================================

``desired`` is ``targetSize``; ``pending`` is at least what ``targetSize`` holds beyond the
booting and running instances, so a MIG that is slow to list its new instances still counts
what it accepted.

Not guaranteed: ``running`` means the MIG has nothing left to do for the VM, not that the
inference server on it answers (a MIG health check with an initial delay keeps it
``VERIFYING`` for that time; without one, a VM counts as running once it is up). The
``currentActions`` summary, read when nothing is being created, cannot tell a stopped VM
(action ``NONE``) from a running one: a MIG with a stopped standby pool over-counts
``running`` there.

Capacity failures: a creating instance's ``lastAttempt.errors`` whose code names an exhausted
resource pool, a stockout or a quota (``ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS]``,
``ZONE_RESOURCE_STOCKOUT``, ``REGION_RESOURCE_STOCKOUT``, ``QUOTA_EXCEEDED``...) make the group
unavailable with that code and message as its reason. Other launch errors (a bad template, a
missing image) make it unavailable too, with a reason saying so: the MIG retries them forever
and none of that capacity would come.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoscaler.core.model import GroupState, Market

CREATING = frozenset({"CREATING", "CREATING_WITHOUT_RETRIES"})
BOOTING = frozenset({"RECREATING", "VERIFYING", "STARTING", "RESUMING", "RESTARTING"})
RUNNING = frozenset({"NONE", "REFRESHING"})
DRAINING = frozenset({"DELETING", "ABANDONING"})
# Instance statuses under action NONE that do not serve: on their way out, or parked.
LEAVING_STATUS = frozenset({"STOPPING", "SUSPENDING"})
PARKED_STATUS = frozenset({"STOPPED", "SUSPENDED", "TERMINATED"})
CAPACITY_CODE_PARTS = ("RESOURCE_POOL_EXHAUSTED", "STOCKOUT", "QUOTA_EXCEEDED")

# The group's ``currentActions`` summary fields (snake_case as the SDK names them).
SUMMARY_RUNNING = ("none", "refreshing")
SUMMARY_BOOTING = ("recreating", "verifying", "starting", "resuming", "restarting")
SUMMARY_DRAINING = ("deleting", "abandoning", "stopping", "suspending")
SUMMARY_CREATING = ("creating", "creating_without_retries")


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of ``listManagedInstances``, as plain values."""

    action: str
    status: str = ""
    errors: tuple[tuple[str, str], ...] = ()  # (code, message) of lastAttempt.errors


def is_capacity_code(code: str) -> bool:
    return any(part in code for part in CAPACITY_CODE_PARTS)


def creating_count(summary: Mapping[str, int]) -> int:
    """Instances the MIG is creating: only then is the per-instance list worth a call (it
    alone splits pending from booting and carries ``lastAttempt`` errors)."""
    return sum(summary.get(k, 0) for k in SUMMARY_CREATING)


def launch_failure(members: Sequence[Member]) -> str:
    """The reason launches fail ('' when none do): capacity codes first, then any other."""
    errors = [e for m in members if m.action in CREATING for e in m.errors]
    if not errors:
        return ""
    capacity = [e for e in errors if is_capacity_code(e[0])]
    code, message = (capacity or errors)[0]
    more = len(errors) - 1
    suffix = f" (and {more} more launch error{'s' if more > 1 else ''})" if more else ""
    if capacity:
        return f"capacity unavailable: {code}: {message}{suffix}"
    return f"launches failing: {code}: {message}{suffix}"


def from_members(name: str, market: Market, target_size: int,
                 members: Sequence[Member]) -> GroupState:
    """The state from ``listManagedInstances`` (used while the MIG creates instances)."""
    booting = running = draining = waiting = 0
    for m in members:
        if m.action in DRAINING or (m.action in RUNNING and m.status in LEAVING_STATUS):
            draining += 1
        elif m.action in RUNNING:
            running += 0 if m.status in PARKED_STATUS else 1
        elif m.action in CREATING and not m.status:
            waiting += 1
        else:
            booting += 1
    reason = launch_failure(members)
    return GroupState(
        name=name, market=market, desired=target_size, booting=booting, running=running,
        draining=draining, pending=max(waiting, target_size - booting - running, 0),
        available=not reason, reason=reason,
    )


def from_summary(name: str, market: Market, target_size: int,
                 summary: Mapping[str, int]) -> GroupState:
    """The state from the group's ``currentActions`` counts, when nothing is being created
    (so no instance can be pending and no launch error is current)."""
    running = sum(summary.get(k, 0) for k in SUMMARY_RUNNING)
    booting = sum(summary.get(k, 0) for k in SUMMARY_BOOTING)
    draining = sum(summary.get(k, 0) for k in SUMMARY_DRAINING)
    return GroupState(
        name=name, market=market, desired=target_size, booting=booting, running=running,
        draining=draining, pending=max(0, target_size - booting - running),
    )
