"""The pure counting rules of the kubernetes provider (``providers/kubernetes/pods.py``)."""

from __future__ import annotations

from autoscaler.providers.kubernetes.pods import PodView, UnschedulableTracker, count_pods


def pod(uid: str, phase: str = "Running", *, deleting: bool = False, ready: bool = False,
        unschedulable: str | None = None) -> PodView:
    return PodView(uid, f"p-{uid}", phase, deleting, ready, unschedulable)


def test_each_pod_is_counted_once_by_the_first_rule_that_applies() -> None:
    counts = count_pods([
        pod("a", ready=True),
        pod("b", ready=True, deleting=True),  # terminating wins over ready
        pod("c", "Pending"),  # scheduled, containers creating
        pod("d", "Running"),  # running but not ready yet (readiness probe)
        pod("e", "Pending", unschedulable="0/2 nodes are available"),
        pod("f", "Failed"),  # dead, replaced by its controller: not counted
        pod("g", "Succeeded"),
    ])
    assert (counts.running, counts.booting, counts.draining) == (1, 2, 1)
    assert [p.uid for p in counts.unschedulable] == ["e"]
    assert counts.pending(desired=5) == 2  # e, plus one replica with no pod yet
    assert counts.pending(desired=2) == 0  # never negative while scaling in


def test_tracker_times_each_pod_from_when_it_was_first_seen() -> None:
    tracker = UnschedulableTracker()
    a, b = pod("a", "Pending", unschedulable="m"), pod("b", "Pending", unschedulable="m")
    assert tracker.overdue([a], now=0.0, timeout_s=60) is None
    assert tracker.overdue([a, b], now=59.0, timeout_s=60) is None
    assert tracker.overdue([a, b], now=60.0, timeout_s=60) == a
    assert tracker.overdue([b], now=100.0, timeout_s=60) is None  # a left; b seen at 59
    assert tracker.overdue([a, b], now=119.0, timeout_s=60) == b  # a starts over at 119
    assert tracker.overdue([], now=500.0, timeout_s=60) is None
    assert tracker.overdue([a], now=500.0, timeout_s=0) == a  # timeout 0: at once
