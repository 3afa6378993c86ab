"""From what the Auto Scaling API says to ``GroupState``: pure functions, no SDK, no I/O.

Kept apart from the client so the mapping (the part reviewers argue about) reads on one page and
is tested on plain dicts shaped like the API's responses.

Lifecycle states (``Instances[].LifecycleState``) map to the product's meanings:

=========================================== =============================================
``Pending``, ``Pending:Wait``, ``Pending:Proceed``   booting: the instance exists and is billed
``InService`` (healthy)                      running
``InService`` with ``HealthStatus: Unhealthy`` draining: the ASG is about to replace it
``Terminating*``, ``Detaching``              draining: leaving the group
``EnteringStandby``, ``Standby``             draining: kept, billed, takes no traffic
``Terminated``, ``Detached``, ``Warmed:*``   not counted: gone, or not in the group
=========================================== =============================================

What this does not guarantee: ``InService`` means EC2 and the ASG's health checks are happy,
not that the inference server has loaded its model. Unless the group has a launch lifecycle
hook that completes when the server is ready, an instance counts as running before it serves.

Capacity failures. AWS accepts any ``DesiredCapacity`` within the group's bounds and then fails
to launch, writing a ``Failed`` scaling activity. A group is reported unavailable when it is
short (fewer instances than desired) and its newest launch activity failed with a message that
names insufficient capacity, unavailable spot capacity, a spot or instance limit, or the spot
price. Other launch failures (a deleted AMI, a bad launch template) leave the group available:
they need a human, not another group; they are logged by the client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.core.model import GroupState, Market

BOOTING = frozenset({"Pending", "Pending:Wait", "Pending:Proceed"})
RUNNING = frozenset({"InService"})
DRAINING = frozenset({
    "Terminating", "Terminating:Wait", "Terminating:Proceed", "Detaching",
    "EnteringStandby", "Standby",
})

CAPACITY_MESSAGE = re.compile(
    "|".join((
        r"InsufficientInstanceCapacity",
        r"insufficient capacity",
        r"do(?:es)? not have sufficient .{0,80}capacity",
        r"no Spot capacity",
        r"Spot capacity not available",
        r"SpotMaxPriceTooLow",
        r"Spot (?:request )?price",
        r"MaxSpotInstanceCountExceeded",
        r"Max spot instance count exceeded",
        r"InstanceLimitExceeded",
        r"VcpuLimitExceeded",
        r"vCPU (?:capacity|limit)",
        r"UnfulfillableCapacity",
    )),
    re.IGNORECASE,
)
LAUNCH = re.compile(r"^Launching a new EC2 instance", re.IGNORECASE)
# Without Capacity Rebalancing an interrupted spot instance is replaced only after its EC2
# health check fails, so the cause then reads "... in response to an EC2 health check
# indicating it has been terminated or stopped": counted only for spot groups.
SPOT_INTERRUPTION = re.compile(
    r"spot instance interruption|rebalance recommendation|interruption notice"
    r"|health.check indicating it has been terminated or stopped", re.IGNORECASE)
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Counts:
    desired: int
    booting: int
    running: int
    draining: int

    @property
    def short(self) -> int:
        """Accepted but not launched: ``pending`` in the product's terms."""
        return max(0, self.desired - self.booting - self.running)


def count(asg: Mapping[str, Any]) -> Counts:
    """Instance counts of one ``AutoScalingGroups[]`` entry."""
    booting = running = draining = 0
    for instance in asg.get("Instances", ()):
        state = str(instance.get("LifecycleState", ""))
        if state in BOOTING:
            booting += 1
        elif state in RUNNING:
            if str(instance.get("HealthStatus", "Healthy")).lower() == "unhealthy":
                draining += 1
            else:
                running += 1
        elif state in DRAINING:
            draining += 1
    return Counts(int(asg.get("DesiredCapacity", 0)), booting, running, draining)


def launch_failure(activities: Sequence[Mapping[str, Any]]) -> str | None:
    """The reason of a capacity failure if the NEWEST launch activity failed for capacity.

    ``activities`` come newest first, as ``DescribeScalingActivities`` returns them. A later
    launch that succeeded or is in progress means capacity came back."""
    for activity in activities:
        if not LAUNCH.search(str(activity.get("Description", ""))):
            continue
        if activity.get("StatusCode") != "Failed":
            return None
        message = str(activity.get("StatusMessage") or activity.get("Description") or "")
        if CAPACITY_MESSAGE.search(message):
            return message[:REASON_CHARS]
        return None
    return None


def other_failure(activities: Sequence[Mapping[str, Any]]) -> str | None:
    """The message of the newest launch activity if it failed for a reason other than capacity
    (logged, so a human sees why a group stays short)."""
    for activity in activities:
        if LAUNCH.search(str(activity.get("Description", ""))):
            if activity.get("StatusCode") == "Failed" and launch_failure([activity]) is None:
                return str(activity.get("StatusMessage") or "")[:REASON_CHARS]
            return None
    return None


def spot_interruptions(activities: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of activities that terminated an instance for a spot interruption (or the rebalance
    recommendation that precedes one): the preemptions that are visible through the API.
    Call it for spot groups only: on-demand instances also fail EC2 health checks."""
    return [
        str(a.get("ActivityId", ""))
        for a in activities
        if SPOT_INTERRUPTION.search(f"{a.get('Cause', '')} {a.get('Description', '')}")
        and "terminat" in str(a.get("Description", "")).lower()
    ]


def group_state(name: str, market: Market, counts: Counts, failure: str | None) -> GroupState:
    return GroupState(
        name=name, market=market, desired=counts.desired, booting=counts.booting,
        running=counts.running, draining=counts.draining, pending=counts.short,
        available=failure is None, reason=failure or "",
    )
