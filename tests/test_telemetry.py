"""Prometheus telemetry, scraped over real HTTP from its own registry."""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.model import Decision, FleetState, GroupState, Market, Observation
from autoscaler.ports.telemetry import NullTelemetry, Telemetry
from autoscaler.runtime.metrics import PrometheusTelemetry


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exercise(t: Telemetry) -> None:
    t.record_observation("chat", Observation(time=1.0, depth=7, oldest_wait_s=2.5, in_flight=3))
    t.record_observation("batch", Observation(time=1.0, depth=1, fresh=False))
    t.record_fleet("chat", FleetState((GroupState("g", Market.SPOT, 3, 1, 2),)))
    decision = Decision("chat", 1.0, current=3, desired=5, targets={"g": 5}, reason="r")
    t.record_decision(decision)
    t.record_scale_action(decision)
    t.record_provider_error("chat", "g", "describe", "throttled")
    t.record_tick(0.004)
    t.record_tick_overrun(2)


def test_metrics_are_served_over_http_from_a_private_registry() -> None:
    telemetry = PrometheusTelemetry()
    other = PrometheusTelemetry()  # a second instance must not collide (own registries)
    port = telemetry.serve("127.0.0.1", 0)
    try:
        exercise(telemetry)
        samples = scrape(port)
    finally:
        telemetry.shutdown()
    chat = (("pool", "chat"),)
    assert samples[("autoscaler_queue_depth", chat)] == 7
    assert samples[("autoscaler_queue_oldest_wait_seconds", chat)] == 2.5
    assert math.isnan(samples[("autoscaler_queue_oldest_wait_seconds", (("pool", "batch"),))])
    assert samples[("autoscaler_observation_stale", (("pool", "batch"),))] == 1
    assert samples[("autoscaler_observation_stale", chat)] == 0
    assert samples[("autoscaler_desired_instances", chat)] == 5
    assert samples[("autoscaler_running_instances", chat)] == 2
    assert samples[("autoscaler_booting_instances", chat)] == 1
    assert samples[("autoscaler_draining_instances", chat)] == 0
    assert samples[("autoscaler_scale_actions_total", (("direction", "up"), ("pool", "chat")))] == 1
    assert samples[("autoscaler_provider_errors_total",
                    (("error", "throttled"), ("group", "g"), ("operation", "describe"),
                     ("pool", "chat")))] == 1
    assert samples[("autoscaler_tick_duration_seconds_count", ())] == 1
    assert samples[("autoscaler_tick_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("autoscaler_tick_overruns_total", ())] == 2
    assert other.registry.get_sample_value("autoscaler_tick_overruns_total") == 0


def test_null_telemetry_accepts_everything() -> None:
    null = NullTelemetry()
    exercise(null)  # the port's contract: every call is accepted and records nothing
    assert not hasattr(null, "registry")
