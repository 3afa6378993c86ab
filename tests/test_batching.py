"""Batching is not free: a measured concurrency -> service-time table, interpolated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.config.models import ServiceModel, parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.registry import Registry
from autoscaler.simulations.session import open_session
from autoscaler.simulations.specs import PolicySpec
from autoscaler.simulations.traces import Trace, batch_multiplier, write_canonical
from tests.sim_support import FIXED, pool_config, run

TABLE = {1: 1.0, 8: 1.4, 32: 2.6}


@pytest.mark.parametrize(("concurrency", "expected"), [
    (1, 1.0), (8, 1.4), (32, 2.6),          # the measured points themselves
    (4, 1.0 + 3 / 7 * 0.4),                 # between points: linear
    (20, 1.4 + 12 / 24 * 1.2),
    (64, 2.6 + 32 * (1.2 / 24)),            # beyond: the last slope continues
])
def test_interpolation(concurrency: int, expected: float) -> None:
    assert batch_multiplier(TABLE, concurrency) == pytest.approx(expected)


def test_below_the_first_point_and_degenerate_tables() -> None:
    assert batch_multiplier({4: 1.5, 8: 2.0}, 1) == 1.5
    assert batch_multiplier({}, 16) == 1.0
    assert batch_multiplier({8: 1.7}, 64) == 1.7


def test_bad_table_names_its_line() -> None:
    text = ("pools:\n  - name: p\n    queue: {kind: memory}\n    sla: {max_wait: 2s}\n"
            "    capacity: {max: 2}\n    service_model:\n      batching: {1: 1.0, 8: -2}\n"
            "    groups: [{name: od, provider: local}]\n")
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "b.yaml")
    assert any(m.startswith("b.yaml:7: pools[0].service_model.batching") for m in
               info.value.messages), info.value.messages
    assert ServiceModel.model_validate({"batching": {"1": 1, "16": 2.5}}).batching == {
        1: 1.0, 16: 2.5}


def _config(tmp_path: Path, slots: int, batching: str) -> Path:
    path = tmp_path / f"c{slots}.yaml"
    path.write_text(
        "controller: {interval: 5s}\npools:\n  - name: p\n    queue: {kind: memory}\n"
        "    sla: {max_wait: 2s, target: 0.99}\n"
        f"    capacity: {{min: 1, max: 1, slots_per_instance: {slots}}}\n"
        "    policy: {kind: fixed, instances: 1}\n"
        f"    service_model: {{batching: {batching}}}\n"
        "    groups: [{name: od, provider: local, hourly_price: 1.0}]\n")
    return path


def test_engine_serves_slower_with_the_table(tmp_path: Path) -> None:
    """Same trace, one 8-slot instance: with the table each request holds its slot 1.4x as
    long, so 6 req/s on 8 slots x 1 s fits without it (75 %) and overloads with it (105 %)."""
    rng = np.random.default_rng(3)
    arrival = np.cumsum(rng.exponential(1 / 6.0, 3000))  # 6 req/s
    trace_path = tmp_path / "t.csv"
    write_canonical(trace_path, arrival, np.full(3000, 1.0))  # 8 slots x 1 s: 8 req/s
    free = open_session(_config(tmp_path, 8, "{}"), trace_path).run(PolicySpec("c"))
    costly = open_session(_config(tmp_path, 8, "{1: 1.0, 8: 1.4}"), trace_path)
    assert costly.trace.service_s[0] == pytest.approx(1.4)
    slow = costly.run(PolicySpec("c"))
    assert free.result.wait_p99_s < 2.0 < slow.result.wait_p99_s
    assert slow.result.sla_attainment < free.result.sla_attainment
    # One slot per instance runs at the table's first point: no stretch.
    single = open_session(_config(tmp_path, 1, "{1: 1.0, 8: 1.4}"), trace_path)
    assert single.trace.service_s[0] == pytest.approx(1.0)


def test_no_table_leaves_service_times_alone(registries: dict[str, Registry[Any]]) -> None:
    pool = pool_config(registries, FIXED.format(n=1, slots=2))
    assert pool.service_model.batching == {}
    trace_arr = np.array([0.0, 1.0])
    result = run(pool, Trace("t", "test", trace_arr, np.array([1.0, 1.0]))).result
    assert result.requests == 2 and result.sla_attainment == 1.0
