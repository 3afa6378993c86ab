"""``deploy/kubernetes/base``: rendered by ``kubectl kustomize`` when kubectl is installed
(otherwise assembled from the kustomization's resources and ConfigMap generator), then checked:
the config inside loads with the real loader, two replicas with leader election, probes on
/healthz and /readyz served by the metrics port, a ServiceMonitor that selects the Service,
RBAC that binds the pods' ServiceAccount to what the ``kubernetes`` provider calls, the Secret
reference, and a grace period longer than the drain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.config.models import parse_config
from autoscaler.runtime.supervisor import CANCEL_GRACE_S

BASE = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "base"


def render() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is not None:
        out = subprocess.run(["kubectl", "kustomize", str(BASE)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    for generator in kustomization["configMapGenerator"]:
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"],
                                  "namespace": generator["namespace"]},
                     "data": {f: (BASE / f).read_text() for f in generator["files"]}})
    return docs


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str, str], dict[str, Any]]:
    docs = render()
    by_key = {}
    for doc in docs:
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in by_key, key
        by_key[key] = doc
    return by_key


def one(objects: dict[tuple[str, str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for (k, _ns, _name), doc in objects.items() if k == kind]
    return found


def test_config_in_the_configmap_loads_with_leader_election(
    objects: dict[tuple[str, str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = one(objects, "Deployment")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if "configMap" in v)
    namespace = deployment["metadata"]["namespace"]
    configmap = objects[("ConfigMap", namespace, volume["configMap"]["name"])]
    monkeypatch.setenv("REDIS_URL", "redis://:secret@redis.autoscaler:6379/0")
    config = parse_config(configmap["data"]["policy.yaml"], "policy.yaml")
    election = config.controller.leader_election
    assert election is not None and election.backend == "kubernetes"
    lease_roles = [doc for (kind, ns, _n), doc in objects.items()
                   if kind == "Role" and ns == election.namespace
                   and any("leases" in rule["resources"] for rule in doc["rules"])]
    assert [r for role in lease_roles for rule in role["rules"]
            for r in rule.get("resourceNames", [])] == [election.name]
    assert config.controller.metrics_port == 9464
    assert config.controller.metrics_host == "0.0.0.0"  # scraped from outside the pod
    spec = deployment["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= config.controller.drain_timeout + CANCEL_GRACE_S
    groups = [g for p in config.pools for g in p.groups]
    namespaces = {g.settings.namespace for g in groups}  # type: ignore[attr-defined]
    roles = {ns for (k, ns, _n) in objects if k == "Role"}
    assert namespaces <= roles, "every managed namespace needs the Role"


def test_two_replicas_probes_and_secret(
    objects: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9464}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["args"] == ["run", "-c", "/etc/autoscaler/policy.yaml"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/autoscaler"]["readOnly"] is True
    secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
    assert secrets == ["queue-autoscaler-secrets"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_service_monitor_scrapes_the_metrics_port(
    objects: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    deployment, service = one(objects, "Deployment"), one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == \
        [service["metadata"]["namespace"]]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_rbac_binds_the_pods_service_account_to_the_scale_subresource(
    objects: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    deployment = one(objects, "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    assert ("ServiceAccount", namespace, account) in objects
    granted = set()
    for (kind, ns, _name), binding in objects.items():
        if kind != "RoleBinding":
            continue
        assert {"kind": "ServiceAccount", "name": account, "namespace": namespace} in \
            binding["subjects"]
        role = objects[("Role", ns, binding["roleRef"]["name"])]
        granted |= {(group, resource, verb) for rule in role["rules"]
                    for group in rule["apiGroups"] for resource in rule["resources"]
                    for verb in rule["verbs"]}
    # what providers/kubernetes calls: read and patch the scale subresource, list pods; and
    # the Lease of leader election
    assert {("apps", "deployments/scale", "get"), ("apps", "deployments/scale", "patch"),
            ("apps", "statefulsets/scale", "patch"), ("", "pods", "list"),
            ("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "update"),
            ("coordination.k8s.io", "leases", "create")} <= granted
    assert not any(verb in ("*", "delete") for _g, _r, verb in granted)
    assert not any(verb == "create" and resource != "leases" for _g, resource, verb in granted)
