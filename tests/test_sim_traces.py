"""Trace loading: every format, service times from tokens, and errors that name file:line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.config.models import ServiceModel
from autoscaler.simulations.traces import TraceError, load_trace, write_canonical
from tests.conftest import TRACES

MODEL = ServiceModel(overhead_s=0.1, prefill_tokens_per_s=1000.0, decode_s_per_token=0.01)


def test_canonical_round_trip(tmp_path: Path) -> None:
    arrival = np.array([0.0, 0.5, 0.5, 2.25])
    service = np.array([1.0, 0.25, 3.0, 1e-3])
    path = tmp_path / "t.csv"
    write_canonical(path, arrival, service)
    trace = load_trace(path)
    assert trace.format == "canonical"
    assert np.allclose(trace.arrival_s, arrival) and np.allclose(trace.service_s, service)


def test_azure_timestamps_are_relative_and_tokens_give_service(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 23:59:59.9000000,1000,10\n"
        "2023-11-17 00:00:00.1234567,2000,0\r\n"
    )
    trace = load_trace(path, MODEL)
    assert trace.format == "azure"
    assert trace.arrival_s == pytest.approx([0.0, 0.2234567], abs=1e-6)
    assert trace.service_s == pytest.approx([0.1 + 1.0 + 0.1, 0.1 + 2.0])


def test_jsonl_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [{"timestamp": 1500, "input_length": 100, "output_length": 5},
            {"output_length": 1, "input_length": 0, "timestamp": 4000}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    trace = load_trace(path, MODEL)
    assert trace.arrival_s == pytest.approx([0.0, 2.5])
    assert trace.service_s == pytest.approx([0.1 + 0.1 + 0.05, 0.1 + 0.01])


def test_rate_series_is_seeded_poisson(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("t_s,rate_rps\n0,100\n60,0\n120,10\n")
    model = ServiceModel(distribution="lognormal", mean_s=2.0, cv=0.5)
    a, b = load_trace(path, model, seed=3), load_trace(path, model, seed=3)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s, load_trace(path, model, seed=4).arrival_s)
    first = np.count_nonzero(a.arrival_s < 60)
    assert 6000 * 0.9 < first < 6000 * 1.1
    assert np.count_nonzero((a.arrival_s >= 60) & (a.arrival_s < 120)) == 0
    assert np.count_nonzero(a.arrival_s >= 120) > 0 and a.arrival_s.max() < 180
    assert np.all(np.diff(a.arrival_s) >= 0)
    assert a.service_s.mean() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("arrival_s,service_s\n0,1\n1,x\n", 3, "'service_s': not a number"),
        ("arrival_s,service_s\n0,1\n2,1\n1,1\n", 4, "time goes backwards"),
        ("arrival_s,service_s\n0,1\n1\n", 3, "too few fields"),
        ("arrival_s,service_s\n0,1,5\n", 2, "too many fields"),
        ("arrival_s,service_s\n0,-1\n", 2, "negative"),
        ("arrival_s,service_s\n0,1\n\n1,1\n", 3, "blank line"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1,1\n"
         "2023-13-16 18:15:47.00,1,1\n", 3, "not a timestamp"),
        ("foo,bar\n1,2\n", 1, "unknown trace header"),
        # an infinite arrival never comes (the simulation would never end); an infinite
        # service never ends (and made --json print the non-JSON token Infinity)
        ("arrival_s,service_s\n0,1\n1e400,1\n", 3, "'arrival_s': number too large"),
        ("arrival_s,service_s\n0,1\n1,1e999\n", 3, "'service_s': number too large"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
                    '{"timestamp": 5, "input_length": 1}\n')
    with pytest.raises(TraceError, match=r"bad\.jsonl:2: key 'output_length': missing key"):
        load_trace(path)


@pytest.mark.parametrize(
    ("row", "key"),
    [('{"timestamp": 12abc, "input_length": 1, "output_length": 1}', "timestamp"),
     ('{"timestamp": 12, "input_length": 1, "output_length": 4xyz}', "output_length"),
     ('{"timestamp": 12, "input_length": 1e999, "output_length": 1}', "input_length")],
)
def test_jsonl_number_with_trailing_garbage_is_refused(tmp_path: Path, row: str, key: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0 , "input_length": 1,"output_length":1}\r\n' + row + "\n")
    with pytest.raises(TraceError, match=rf"bad\.jsonl:2: key '{key}': "):
        load_trace(path)


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"public traces not present at {TRACES}")
@pytest.mark.parametrize(("name", "rows", "span"), [
    ("AzureLLMInferenceTrace_conv.csv", 19366, 3501.7),
    ("AzureLLMInferenceTrace_code.csv", 8819, 3435.9),
])
def test_real_azure_traces_load(name: str, rows: int, span: float) -> None:
    trace = load_trace(TRACES / name)
    assert len(trace) == rows
    assert trace.span_s == pytest.approx(span, abs=0.05)  # the README's figures
