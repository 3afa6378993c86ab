"""``deploy/grafana/dashboard.json`` and ``deploy/prometheus/alerts.yaml`` read only what the
daemon exports: every metric name (with its exposition suffix: ``_total``, ``_bucket``) and
every label they group or filter by is checked against a real ``PrometheusTelemetry`` registry
after one of each record. ``promtool`` (when installed) checks the rules and runs their unit
tests (``deploy/prometheus/alerts_test.yaml``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.config.models import load_config
from autoscaler.core.model import Decision, FleetState, GroupState, Market, Observation
from autoscaler.runtime.attainment import AttainmentStep
from autoscaler.runtime.budget import BudgetMetrics
from autoscaler.runtime.metrics import PrometheusTelemetry
from autoscaler.runtime.reload import ReloadMetrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

ADDED_BY_PROMETHEUS = {"instance", "job", "le", "__name__"}
METRIC = re.compile(r"\b(?:autoscaler|process)_[a-z0-9_]+\b")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from a registry that has recorded one of everything."""
    telemetry = PrometheusTelemetry()
    telemetry.fleet.configure(load_config(ROOT / "examples" / "chat-redis-list.yaml"))
    pool = "chat"
    telemetry.record_observation(pool, Observation(1.0, 3, 0.5, 2, 4.0, 3.5))
    fleet = FleetState((GroupState("local", Market.ON_DEMAND, 2, 0, 2),))
    telemetry.record_fleet(pool, fleet)
    decision = Decision(pool, 1.0, 2, 3, {"local": 3}, "up",
                        {"recommended": 3, "service_rate": 0.5})
    telemetry.record_decision(decision)
    telemetry.record_saturation(pool, False)
    telemetry.record_scale_action(decision)
    telemetry.record_provider_error(pool, "local", "resize", "throttled")
    telemetry.record_leader(True)
    telemetry.record_tick(0.01)
    telemetry.record_tick_overrun(1)
    telemetry.record_observation_invalid(pool, "future")
    # the optional features' metrics, on the same registry when their config asks for them
    BudgetMetrics(telemetry.registry).ratio.labels(pool).set(0.5)
    AttainmentStep({pool: 2.0}, telemetry.registry).gauge.labels(pool).set(0.99)
    ReloadMetrics(telemetry).failures.inc()
    Gauge("autoscaler_pool_paused", "as autoscaler.runtime.pause registers it", ["pool"],
          registry=telemetry.registry).labels(pool).set(0)
    names: dict[str, set[str]] = {}
    text = generate_latest(telemetry.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [r for g in yaml.safe_load(ALERTS.read_text())["groups"]
                                   for r in g["rules"]]
    return rules


def check_expr(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What ``expr`` names that the daemon does not export (metrics, then labels)."""
    problems = []
    known = exported
    metrics = set(METRIC.findall(expr))
    problems += [f"metric {m}" for m in sorted(metrics - set(known))]
    labels = set().union(*(known.get(m, set()) for m in metrics)) | ADDED_BY_PROMETHEUS
    used = {label.strip() for group in BY.findall(expr) for label in group.split(",")
            if label.strip()}
    used |= {m for selector in SELECTOR.findall(expr) for m in MATCHER.findall(selector)}
    problems += [f"label {label}" for label in sorted(used - labels)]
    return problems


def test_dashboard_uses_only_exported_metrics_and_labels(exported: dict[str, set[str]]) -> None:
    problems = {e: p for e in dashboard_exprs() if (p := check_expr(e, exported))}
    assert problems == {}


def test_alerts_use_only_exported_metrics_and_labels(exported: dict[str, set[str]]) -> None:
    problems = {r["alert"]: p for r in alert_rules() if (p := check_expr(r["expr"], exported))}
    assert problems == {}


def test_the_checker_catches_a_typo_and_a_wrong_label(exported: dict[str, set[str]]) -> None:
    assert check_expr("autoscaler_scale_actions", exported) == ["metric autoscaler_scale_actions"]
    assert check_expr('sum by (zone) (autoscaler_queue_depth{pool="a"})', exported) == \
        ["label zone"]
    assert check_expr("autoscaler_scale_actions_total", exported) == []


def test_dashboard_has_the_panels_operators_ask_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set(METRIC.findall(" ".join(dashboard_exprs())))
    assert {
        "autoscaler_queue_oldest_wait_seconds", "autoscaler_sla_max_wait_seconds",  # wait vs SLA
        "autoscaler_group_target_instances", "autoscaler_group_running_instances",
        "autoscaler_cost_rate_usd_per_hour", "autoscaler_budget_used_ratio",
        "autoscaler_scale_actions_total", "autoscaler_provider_errors_total",
        "autoscaler_leader",
    } <= used
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in dashboard_exprs():
        for variable in re.findall(r"\$([a-z_]+)", expr):
            assert variable.startswith("__") or variable in variables, variable
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_alerts_cover_the_failure_modes() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert {"AutoscalerQueueDataStale", "AutoscalerSaturatedAtMax", "AutoscalerBudgetNearlySpent",
            "AutoscalerProviderErrors", "AutoscalerNoLeader"} <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert "for" in rule, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # promtool compares annotations word for word: test the firing logic on a copy without them
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(ALERTS.with_name("alerts_test.yaml"), tmp_path / "alerts_test.yaml")
    test = subprocess.run(["promtool", "test", "rules", "alerts_test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
