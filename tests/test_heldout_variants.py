"""The held-out variants keep each trace's content and change only what they say they change."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from pathlib import Path

from benchmarks.heldout import AZURE_TIME, read_rates, variants

AZURE_ROWS = [
    ("2023-11-16 18:17:03.9799600", "4808", "10"),
    ("2023-11-16 18:17:04.0319600", "3180", "8"),
    ("2023-11-16 18:17:09.5000000", "120", "300"),
]


def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    for name, rates in (("deepseek-r1", [10.0, 20.0, 15.0]), ("mm-image", [4.0, 5.0, 9.0])):
        rows = "".join(f"{i * 600},{r}\n" for i, r in enumerate(rates))
        (folder / f"servegen_{name}_1d_rate.csv").write_text("t_s,rate_rps\n" + rows)
    for tag in ("conv", "code"):
        body = "".join(",".join(row) + "\n" for row in AZURE_ROWS)
        (folder / f"AzureLLMInferenceTrace_{tag}.csv").write_text(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n" + body
        )
    return folder


def test_rate_variants_reverse_scale_and_rewindow(tmp_path: Path) -> None:
    made = {v.name: v for v in variants(shared(tmp_path), tmp_path)}
    assert read_rates(made["ds_rev"].trace) == [15.0, 20.0, 10.0]
    assert read_rates(made["mm_x3"].trace) == [12.0, 15.0, 27.0]
    assert read_rates(made["ds_x03"].trace) == [3.0, 6.0, 4.5]
    lines = made["ds_w300"].trace.read_text().splitlines()
    assert lines[1:] == ["0,10.0000", "300,20.0000", "600,15.0000"]
    assert made["ds_rev"].config.name == "servegen-day.yaml"


def test_the_azure_trace_is_mirrored_in_time_with_its_token_counts(tmp_path: Path) -> None:
    made = {v.name: v for v in variants(shared(tmp_path), tmp_path)}
    rows = [line.split(",") for line in made["az_code_rev"].trace.read_text().splitlines()[1:]]
    stamps = [datetime.strptime(r[0][:26], AZURE_TIME) for r in rows]
    # Gaps 0.052 s then 5.468 s become 5.468 s then 0.052 s; the span is unchanged.
    gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
    assert gaps == [5.46804, 0.052]
    assert [r[1:] for r in rows] == [["120", "300"], ["3180", "8"], ["4808", "10"]]
