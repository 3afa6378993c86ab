"""From the published ``Microsoft.Compute/virtualMachineScaleSets`` REST shapes to a
``GroupState``: pure functions over the JSON (camelCase keys, as ``as_dict()`` of the SDK's
models or the wire gives them), no SDK import, no I/O.

How one scale-set VM (``.../virtualMachineScaleSets/{vmss}/virtualMachines`` listed with
``$expand=instanceView``) is counted:

==================================================  ===========================================
``provisioningState: Deleting``                      ``draining`` (scale-in in progress)
a ``ProvisioningState/failed/<code>`` status, code    ``pending`` and the group unavailable:
in ``CAPACITY_CODES``                                the launch is failing for want of capacity
``PowerState/deallocated|deallocating|stopped…``     ``pending``; on a ``Spot`` scale set it is an
                                                     eviction: ``draining``, out of ``desired``
                                                     (a new one makes the group unavailable)
``provisioningState: Succeeded|Updating`` and        ``running``
``PowerState/running``
anything else (``Creating``, ``Starting``, no        ``booting``
instance view yet, another failure)
==================================================  ===========================================

``desired`` is ``sku.capacity`` less the evicted VMs; VMs the scale set has not created yet are
``pending``.

Evictions. With the ``Deallocate`` eviction policy Azure keeps an evicted Spot VM in the set,
deallocated: it serves nothing, keeps its disks (billed) and still counts in ``sku.capacity``
and against the Spot core quota, so a PATCH of the capacity it already counts in launches
nothing. It is therefore never capacity here: it counts as ``draining`` (leaving, not serving)
and not in ``desired``, so the core sizes from the VMs that can serve. The client deletes it
(``POST .../virtualMachineScaleSets/{vmss}/delete`` with its instance id, which lowers the
capacity by one) before the group's next resize, so the new capacity is real. New evictions
(ids not seen evicted at the previous describe) make the group unavailable with the reason,
so the allocator moves their load elsewhere at once and the capacity hold backs spot off; VMs
already reported evicted do not keep it unavailable (a group held for as long as nobody
deletes them would never be resized, so never cleaned).

Not guaranteed: Azure keeps no record of an eviction once a ``Delete``-policy Spot VM is gone;
then the only trace is the capacity that Azure lowered, and the daemon simply sees a smaller
group. An evicted VM lingers (not counted) until the group's next resize: a group whose
allocation stays what it runs is not resized, so its evicted VMs wait for the next change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.core.model import GroupState, Market

CAPACITY_CODES = frozenset({
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "SkuNotAvailable",
    "SpotAllocationFailed",
})
"""Error codes (ARM ``error.code`` or a VM's ``ProvisioningState/failed/<code>``) that mean
the region or zone cannot give us this size now."""

QUOTA_CODES = frozenset({"QuotaExceeded", "OperationNotAllowed"})
"""Codes that are a capacity failure when their message names a quota (Azure answers a core
quota overrun with ``OperationNotAllowed``: "... exceeding approved ... Cores quota")."""

STOPPED_POWER = frozenset({"deallocated", "deallocating", "stopped", "stopping"})


def is_capacity_failure(code: str, message: str) -> bool:
    """True when ``code`` (and, for quota codes, ``message``) says launches cannot succeed."""
    if code in CAPACITY_CODES:
        return True
    return code in QUOTA_CODES and "quota" in message.lower()


@dataclass(frozen=True, slots=True)
class VmView:
    """What counts about one VM: where it stands and, if its launch failed, why."""

    bucket: str  # running | booting | pending | draining (evicted: draining)
    failure_code: str = ""
    failure_message: str = ""
    evicted: bool = False


def _get(data: Mapping[str, Any] | None, *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _statuses(vm: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    statuses = _get(vm, "properties", "instanceView", "statuses")
    return [s for s in statuses if isinstance(s, Mapping)] if isinstance(statuses, list) else []


def classify_vm(vm: Mapping[str, Any], spot: bool) -> VmView:
    """Put one scale-set VM in its bucket (table in the module docstring)."""
    provisioning = str(_get(vm, "properties", "provisioningState") or "").lower()
    if provisioning == "deleting":
        return VmView("draining")
    power = ""
    failure: tuple[str, str] | None = None
    for status in _statuses(vm):
        code = str(status.get("code") or "")
        if code.startswith("PowerState/"):
            power = code.removeprefix("PowerState/").lower()
        elif code.startswith("ProvisioningState/failed/"):
            failure = (code.removeprefix("ProvisioningState/failed/"),
                       str(status.get("message") or status.get("displayStatus") or ""))
    if failure is not None and is_capacity_failure(*failure):
        return VmView("pending", failure_code=failure[0], failure_message=failure[1])
    if power in STOPPED_POWER:
        return VmView("draining", evicted=True) if spot else VmView("pending")
    if provisioning in ("succeeded", "updating") and power == "running":
        return VmView("running")
    return VmView("booting")


def is_spot(vmss: Mapping[str, Any]) -> bool:
    priority = _get(vmss, "properties", "virtualMachineProfile", "priority")
    return str(priority or "").lower() == "spot"


def capacity_of(vmss: Mapping[str, Any]) -> int:
    capacity = _get(vmss, "sku", "capacity")
    return int(capacity) if isinstance(capacity, int) and capacity >= 0 else 0


def group_state(
    name: str, market: Market, vmss: Mapping[str, Any], vms: Iterable[Mapping[str, Any]],
    seen_evicted: frozenset[str] = frozenset(),
) -> tuple[GroupState, frozenset[str]]:
    """The group's state and the instance ids of its evicted Spot VMs; ``seen_evicted`` are
    those already reported (only new ones make the group unavailable)."""
    spot = is_spot(vmss)
    counts = {"running": 0, "booting": 0, "pending": 0, "draining": 0}
    failures: dict[str, tuple[int, str]] = {}
    evicted_ids: set[str] = set()
    for vm in vms:
        view = classify_vm(vm, spot)
        counts[view.bucket] += 1
        if view.evicted:
            evicted_ids.add(str(vm.get("instanceId", "")))
        if view.failure_code:
            seen, _ = failures.get(view.failure_code, (0, ""))
            failures[view.failure_code] = (seen + 1, view.failure_message)
    desired = max(0, capacity_of(vmss) - len(evicted_ids))
    live = counts["running"] + counts["booting"] + counts["pending"]
    pending = counts["pending"] + max(0, desired - live)
    reasons = [f"{code}: {message} ({n} instance{'s' if n > 1 else ''})".replace(": (", " (")
               for code, (n, message) in sorted(failures.items())]
    new = len(evicted_ids - seen_evicted)
    if new:
        reasons.append(f"spot eviction: {new} instance{'s' if new > 1 else ''} "
                       "evicted (deallocated)")
    state = GroupState(
        name=name, market=market, desired=desired, booting=counts["booting"],
        running=counts["running"], draining=counts["draining"], pending=pending,
        available=not reasons, reason="; ".join(reasons),
    )
    return state, frozenset(evicted_ids)
