"""Held-out check for a policy: variants of the shared traces it was not developed on.

The ``sla`` policy's defaults were chosen on the shared traces, so its results there say little
about other traffic of the same kinds. This derives variants that keep each trace's character
and change what a policy tuned to the file would have leaned on:

* ``*_rev``: the trace played backwards (a rate series' windows in reverse order; a request
  trace's arrivals mirrored in time, token counts kept), so every step down becomes a step up;
* ``*_x3``, ``*_x03``: a rate series at 3x and 0.3x its rates (pools of ~100 and ~5 instances);
* ``*_w300``, ``*_w900``: the same window rates on 300 s and 900 s windows (steps twice as
  often over half a day; two-thirds as often over the first 96 windows).

Each variant runs the policy under test, the oracle and ``threshold:target=4..16`` on seeds
0-2 through ``autoscaler simulate --json``; a cell passes the issue's criteria when the policy
meets the SLA, costs no more than the cheapest threshold that met it in hindsight, and at most
1.15x the oracle. References are cached in the output folder (they do not depend on the policy
under test), so re-checking a policy change runs only that policy.

    python -m benchmarks.heldout [--policy sla:growth_share=0.5] [--only ds_rev,mm_x3]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"
AZURE_FLEET = ROOT / "examples" / "gpu-fleet-sim.yaml"
SEEDS = (0, 1, 2)
THRESHOLDS = tuple(range(4, 17))
AZURE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class Variant:
    name: str
    config: Path
    trace: Path


def read_rates(path: Path) -> list[float]:
    """A rate series' window rates in time order (``t_s,rate_rps``)."""
    with path.open(newline="") as f:
        rows = sorted((float(r["t_s"]), float(r["rate_rps"])) for r in csv.DictReader(f))
    return [rate for _, rate in rows]


def write_rates(path: Path, rates: Sequence[float], window_s: float) -> Path:
    with path.open("w") as f:
        f.write("t_s,rate_rps\n")
        f.writelines(f"{i * window_s:g},{rate:.4f}\n" for i, rate in enumerate(rates))
    return path


def reverse_azure(source: Path, target: Path) -> Path:
    """The Azure request trace mirrored in time: arrival t becomes first + (last - t)."""
    with source.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    stamps = [datetime.strptime(r[0][:26], AZURE_TIME) for r in body]
    first, last = min(stamps), max(stamps)
    mirrored = sorted(
        (first + (last - stamp), r[1:]) for stamp, r in zip(stamps, body, strict=True)
    )
    with target.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows([stamp.strftime(AZURE_TIME), *rest] for stamp, rest in mirrored)
    return target


def variants(shared: Path, out: Path) -> list[Variant]:
    """Writes every variant under ``out``; the day configs are the shared fleet's."""
    day = shared / "servegen-day.yaml"
    made: list[Variant] = []
    for tag, name in (("ds", "deepseek-r1"), ("mm", "mm-image")):
        rates = read_rates(shared / f"servegen_{name}_1d_rate.csv")
        series = {
            f"{tag}_rev": (rates[::-1], 600.0),
            f"{tag}_x3": ([3 * r for r in rates], 600.0),
            f"{tag}_x03": ([0.3 * r for r in rates], 600.0),
            f"{tag}_w300": (rates, 300.0),
            f"{tag}_w900": (rates[:96], 900.0),
        }
        for key, (values, window) in series.items():
            made.append(Variant(key, day, write_rates(out / f"{key}.csv", values, window)))
    for tag in ("conv", "code"):
        trace = reverse_azure(
            shared / f"AzureLLMInferenceTrace_{tag}.csv", out / f"az_{tag}_rev.csv"
        )
        made.append(Variant(f"az_{tag}_rev", AZURE_FLEET, trace))
    return made


def simulate(variant: Variant, policies: Sequence[str]) -> list[dict[str, Any]]:
    command = [
        sys.executable, "-m", "autoscaler", "simulate", "-c", str(variant.config),
        "--trace", str(variant.trace), "--warmup", "600", "--json",
        "--seeds", ",".join(map(str, SEEDS)),
    ]
    for policy in policies:
        command += ["--policy", policy]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant.name}: simulate failed:\n{done.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    return results


def references(variant: Variant, target: float) -> dict[str, dict[str, float]]:
    """Per seed: the cheapest threshold meeting the SLA (inf if none) and the oracle's cost."""
    rows = simulate(variant, ["oracle", *(f"threshold:target={t}" for t in THRESHOLDS)])
    refs: dict[str, dict[str, float]] = {}
    for seed in SEEDS:
        mine = [r for r in rows if r["seed"] == seed]
        passing = [
            float(r["cost_usd"])
            for r in mine
            if str(r["policy"]).startswith("threshold")
            and float(r["sla_attainment"]) >= target
        ]
        oracle = next(r for r in mine if r["policy"] == "oracle")
        refs[str(seed)] = {
            "threshold": min(passing, default=math.inf),
            "oracle": float(oracle["cost_usd"]),
            "oracle_attainment": float(oracle["sla_attainment"]),
        }
    return refs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="sla", help="the policy spec under test")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "heldout")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--target", type=float, default=0.99)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [
        v for v in variants(args.shared, args.out)
        if not args.only or v.name in args.only.split(",")
    ]
    cache = args.out / "references.json"
    refs: dict[str, dict[str, dict[str, float]]] = (
        json.loads(cache.read_text()) if cache.exists() else {}
    )

    def run(variant: Variant) -> tuple[Variant, list[dict[str, Any]]]:
        if variant.name not in refs:
            refs[variant.name] = references(variant, args.target)
        return variant, simulate(variant, [args.policy])

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run, chosen))
    cache.write_text(json.dumps(refs, indent=1))
    print(f"{'variant':12} seed  attainment       cost  /threshold  /oracle  criteria")
    passed = {"meets": 0, "threshold": 0, "oracle": 0}
    cells = 0
    for variant, rows in done:
        for row in rows:
            ref = refs[variant.name][str(row["seed"])]
            cost = float(row["cost_usd"])
            attained = float(row["sla_attainment"])
            meets, cheap, near = (
                attained >= args.target, cost <= ref["threshold"], cost <= 1.15 * ref["oracle"]
            )
            cells += 1
            passed["meets"] += meets
            passed["threshold"] += cheap
            passed["oracle"] += near
            failed = [n for n, ok in zip(("MISS", ">threshold", ">1.15x oracle"),
                                         (meets, cheap, near), strict=True) if not ok]
            versus = f"{cost / ref['threshold']:11.3f}" if math.isfinite(ref["threshold"]) else (
                f"{'none met':>11}")
            print(f"{variant.name:12} {row['seed']:>4} {100 * attained:10.2f} % "
                  f"{cost:10.2f} {versus} {cost / ref['oracle']:8.3f}"
                  f"  {' '.join(failed) or 'all met'}")
    print(f"\n{args.policy}: meets {passed['meets']}/{cells}, <= cheapest threshold "
          f"{passed['threshold']}/{cells}, <= 1.15x oracle {passed['oracle']}/{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
