"""Leader election on a Kubernetes Lease, against the fake API server through the real
kubernetes-asyncio client: CAS on resourceVersion, fencing by leaseTransitions, expiry by
observed time, release, and failover between two electors behind ``LeaderGate``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.runtime.clock import LoopClock
from autoscaler.runtime.kube_lease import KubernetesLease
from autoscaler.runtime.leader import LeaderGate, make_lease
from tests.kubernetes.fake_api import FakeKubeApi


class Tick:
    """A monotonic clock per elector that the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(path: Path, holder: str, clock: Tick | None = None, ttl: float = 3.0
          ) -> KubernetesLease:
    return KubernetesLease("ops", "autoscaler", ttl, kubeconfig=str(path), context="test",
                           holder=holder, monotonic=clock or time.monotonic)


async def test_cas_fencing_expiry_and_release(api: FakeKubeApi, kubeconfig_file: Path) -> None:
    ca, cb = Tick(), Tick()
    a, b = lease(kubeconfig_file, "a", ca), lease(kubeconfig_file, "b", cb)
    try:
        assert await a.acquire() and a.fence == 0  # created
        assert not await b.acquire()  # held, and b just saw this version
        cb.now += 2.9
        assert await a.renew()  # a new resourceVersion: b's observation starts over
        assert not await b.acquire()
        cb.now += 2.9
        assert not await b.acquire()  # 2.9 s since the renewal b saw: not expired
        cb.now += 0.2
        assert await b.acquire() and b.fence == 1  # expired: taken, a new term
        assert not await a.holds() and a.token is None  # a's fencing check fails at once
        assert not await a.renew()
        stored = api.leases[("ops", "autoscaler")]
        assert stored["spec"]["holderIdentity"] == "b"
        assert stored["spec"]["leaseTransitions"] == 1
        assert stored["spec"]["leaseDurationSeconds"] == 3
        await b.release()  # emptied, not deleted: the transition count survives
        assert api.leases[("ops", "autoscaler")]["spec"]["holderIdentity"] is None
        assert await a.acquire() and a.fence == 2  # free at once after a release
    finally:
        await a.close()
        await b.close()


async def test_a_race_for_a_free_lease_has_one_winner(
    api: FakeKubeApi, kubeconfig_file: Path
) -> None:
    electors = [lease(kubeconfig_file, f"r{i}") for i in range(4)]
    try:
        won = await asyncio.gather(*(e.acquire() for e in electors))
        assert won.count(True) == 1  # the others' POST got 409 AlreadyExists
        first = electors[won.index(True)]
        await first.release()
        for e in electors:
            await e.holds()  # read the released version
        won = await asyncio.gather(*(e.acquire() for e in electors))
        assert won.count(True) == 1  # the others' PUT got 409 Conflict (stale version)
        winner = electors[won.index(True)]
        assert winner.fence == 1
        assert api.leases[("ops", "autoscaler")]["spec"]["holderIdentity"] == winner.holder
    finally:
        for e in electors:
            await e.close()


async def test_failover_between_two_gates(
    api: FakeKubeApi, kubeconfig_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 1.0
    gates = [LeaderGate(lease(kubeconfig_file, name, ttl=ttl), LoopClock())
             for name in ("a", "b")]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(g.run(s)) for g, s in zip(gates, stops, strict=True)]

    async def leader_within(seconds: float, among: list[LeaderGate]) -> LeaderGate:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            open_now = [g for g in gates if g.is_open()]
            assert len(open_now) <= 1, "two open gates at once"
            if open_now and open_now[0] in among:
                return open_now[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no leader among {[g.lease.location for g in among]}")

    try:
        first = await leader_within(5, gates)
        other = gates[1 - gates.index(first)]
        fence = first.lease.fence
        assert await first.confirm()

        async def crashed() -> None:  # no release: as if the process were SIGKILLed
            return None

        monkeypatch.setattr(first.lease, "release", crashed)
        crash = time.monotonic()
        index = gates.index(first)
        stops[index].set()
        await tasks[index]
        second = await leader_within(ttl * 3, [other])
        took = time.monotonic() - crash
        assert took <= ttl + ttl / 3 + 0.5, f"failover took {took:.2f} s"
        assert second.lease.fence == (fence or 0) + 1
        assert await second.confirm()
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert api.leases[("ops", "autoscaler")]["spec"]["holderIdentity"] is None  # released


def test_the_config_block_and_its_errors(kubeconfig_file: Path) -> None:
    head = """
pools:
  - name: chat
    queue: {kind: memory, name: q}
    sla: {max_wait: 2s}
    capacity: {min: 0, max: 2}
    groups: [{name: g, provider: local}]
controller:
"""
    config = parse_config(head + "  leader_election: {backend: kubernetes, namespace: ops, "
                                 f"name: autoscaler, ttl: 5s, kubeconfig: {kubeconfig_file}}}\n")
    election = config.controller.leader_election
    assert election is not None
    made = make_lease(election)
    assert isinstance(made, KubernetesLease) and made.location == "lease ops/autoscaler"
    with pytest.raises(ConfigFileError) as bad:
        parse_config(head + "  leader_election: {backend: kubernetes, ttl: 500ms}\n")
    assert bad.value.messages[0].startswith("<string>:9: controller.leader_election.ttl: ")
    with pytest.raises(ConfigFileError) as bad:
        parse_config(head + "  leader_election: {key: x}\n")
    assert "controller.leader_election.url: the redis backend needs" in bad.value.messages[0]


async def test_the_shipped_lease_role_grants_exactly_what_the_lease_calls(
    api: FakeKubeApi, kubeconfig_file: Path,
) -> None:
    """deploy/kubernetes/base/leader-election-rbac.yaml: create on leases, get and update on the one
    Lease by name; the elector uses exactly those (a whole term: take, renew, check, release)."""
    import yaml

    a = KubernetesLease("serving", "queue-autoscaler", 3.0, kubeconfig=str(kubeconfig_file),
                        context="test", holder="a")
    try:
        assert await a.acquire() and await a.renew() and await a.holds()
        await a.release()
        assert await a.acquire()
    finally:
        await a.close()
    verbs = {"GET": "get", "PUT": "update", "POST": "create"}
    used = set()
    for method, path in api.requests:
        parts = path.strip("/").split("/")
        assert parts[:6] == ["apis", "coordination.k8s.io", "v1", "namespaces", "serving",
                             "leases"]
        used.add((verbs[method], parts[6] if len(parts) == 7 else None))
    root = Path(__file__).resolve().parents[2]
    docs = list(yaml.safe_load_all(
        (root / "deploy/kubernetes/base/leader-election-rbac.yaml").read_text()))
    [role] = [d for d in docs if d["kind"] == "Role"]
    granted = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        for name in rule.get("resourceNames", [None]):
            granted.update((verb, name) for verb in rule["verbs"])
    assert granted == used
