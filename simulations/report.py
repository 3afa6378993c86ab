"""Reports: a rich table for people, the ``--json`` document for scripts, a PNG timeline.

The PNG is what to look at first: per minute, what arrived, how long it waited against the
SLA line, how deep the queue got, and the fleet by market and state under it, one column of
panels per policy so policies compare at a glance on the same time axis.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoscaler.config.models import PoolConfig
from autoscaler.simulations.engine import MARKETS, Run
from autoscaler.simulations.traces import Trace

if TYPE_CHECKING:  # rich loads on use: `--json` runs are start-up bound and never need it
    from rich.table import Table


def document(runs: Sequence[Run]) -> dict[str, Any]:
    """The exact ``--json`` shape: results per policy plus the lower bound."""
    lower = runs[0].lower_bound_cost_usd if runs else 0.0
    return {
        "results": [r.result.as_json() for r in runs],
        "lower_bound_cost_usd": round(lower, 2),
    }


def table(runs: Sequence[Run], pool: PoolConfig, trace: Trace, warmup: float) -> Table:
    sla = pool.sla
    title = (
        f"{trace.name}: {len(trace):,} requests over {trace.span_s / 60:.1f} min, pool "
        f"{pool.name!r}, SLA {sla.target:.1%} within {sla.max_wait:g}s"
        + (f", first {warmup:g}s not counted" if warmup else "")
    )
    from rich.table import Table

    out = Table(title=title, caption=_caption(runs))
    for name in ("policy", "requests", "SLA met", "p50 s", "p95 s", "p99 s", "max s",
                 "inst-h", "cost $", "actions", "preempt"):
        out.add_column(name, justify="left" if name == "policy" else "right")
    for run in runs:
        r = run.result
        met = "green" if r.sla_attainment >= sla.target else "red"
        out.add_row(
            r.policy, f"{r.requests:,}", f"[{met}]{r.sla_attainment:.2%}[/{met}]",
            f"{r.wait_p50_s:.2f}", f"{r.wait_p95_s:.2f}", f"{r.wait_p99_s:.2f}",
            f"{r.wait_max_s:.1f}", f"{r.instance_hours:.2f}", f"{r.cost_usd:.2f}",
            str(r.scale_actions), str(r.preemptions),
        )
    return out


def _caption(runs: Sequence[Run]) -> str:
    if not runs:
        return ""
    parts = [f"lower bound cost ${runs[0].lower_bound_cost_usd:.2f}"]
    for run in runs:
        extra = []
        if run.requeued:
            extra.append(f"{run.requeued} re-queued after preemption")
        if run.launch_failures:
            extra.append(f"{run.launch_failures} failed launches (stockout)")
        if run.unserved:
            extra.append(f"{run.unserved} never served")
        if extra:
            parts.append(f"{run.result.policy}: " + ", ".join(extra))
    return "; ".join(parts)


def print_table(runs: Sequence[Run], pool: PoolConfig, trace: Trace, warmup: float) -> None:
    """To stdout; wide enough for every column even when piped (rich assumes 80 then)."""
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=150)
    console.print(table(runs, pool, trace, warmup))


def write_outputs(
    out_dir: Path, runs: Sequence[Run], pool: PoolConfig, trace: Trace, warmup: float
) -> list[Path]:
    """``results.json`` and ``timeline.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(document(runs), indent=2) + "\n")
    png_path = out_dir / "timeline.png"
    plot_timeline(png_path, runs, pool, trace, warmup)
    return [json_path, png_path]


def _per_minute(trace: Trace, waits: np.ndarray[Any, Any], minutes: int) -> np.ndarray[Any, Any]:
    """Wait p50/p95/p99/max per arrival minute (NaN for empty minutes)."""
    bins = np.minimum((trace.arrival_s // 60).astype(np.int64), minutes - 1)
    order = np.argsort(bins, kind="stable")
    edges = np.searchsorted(bins[order], np.arange(minutes + 1))
    out = np.full((minutes, 4), np.nan)
    for m in range(minutes):
        chunk = waits[order[edges[m] : edges[m + 1]]]
        if chunk.size:
            out[m, :3] = np.percentile(chunk, [50, 95, 99])
            out[m, 3] = chunk.max()
    return out


def plot_timeline(
    path: Path, runs: Sequence[Run], pool: PoolConfig, trace: Trace, warmup: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = max(1, int(np.ceil(max(r.end_s for r in runs) / 60)))
    counts = np.bincount((trace.arrival_s // 60).astype(np.int64), minlength=minutes)[:minutes]
    ncols = len(runs)
    fig, axes = plt.subplots(
        4, ncols, figsize=(5.5 * ncols + 1, 11), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [1, 1.4, 1, 1.4]},
    )
    x = np.arange(minutes)
    colors = {"booting": "#f2c14e", "running": "#2e86ab", "draining": "#a5a5a5"}
    for col, run in enumerate(runs):
        r = run.result
        ax = axes[0][col]
        ax.bar(x, counts, width=1.0, color="#7a9e7e", align="edge")
        ax.set_title(
            f"{r.policy}\nSLA {r.sla_attainment:.2%} · ${r.cost_usd:.2f} · "
            f"{r.instance_hours:.1f} inst-h", fontsize=10,
        )
        ax = axes[1][col]
        pm = _per_minute(trace, run.waits, minutes)
        for k, (label, color) in enumerate(
            [("p50", "#2e86ab"), ("p95", "#f18f01"), ("p99", "#c73e1d"), ("max", "#5c2a9d")]
        ):
            ax.plot(x + 0.5, pm[:, k], label=label, color=color, lw=1.2)
        ax.axhline(pool.sla.max_wait, color="black", ls="--", lw=1, label="SLA max_wait")
        ax.set_yscale("symlog", linthresh=max(pool.sla.max_wait / 2, 0.1))
        ax.set_ylim(bottom=0)
        tl = run.timeline
        axes[2][col].plot(tl.t / 60, tl.depth, color="#c73e1d", lw=0.8, label="queued")
        axes[2][col].set_yscale("symlog", linthresh=10)
        axes[2][col].set_ylim(bottom=0)
        ax = axes[3][col]
        stacks, labels, palette = [], [], []
        for m, market in enumerate(MARKETS):
            for state in ("running", "booting", "draining"):
                series = tl.fleet[:, m, ("booting", "running", "draining").index(state)]
                if series.any():
                    stacks.append(series)
                    labels.append(f"{market.value} {state}")
                    alpha = 1.0 if market == MARKETS[0] else 0.55
                    palette.append(matplotlib.colors.to_rgba(colors[state], alpha))
        if stacks:
            ax.stackplot(tl.t / 60, *stacks, labels=labels, colors=palette, step="post")
        ax.plot(tl.t / 60, tl.in_flight / pool.capacity.slots_per_instance, color="black",
                lw=0.7, label="busy slots ÷ slots per instance")
        ax.set_xlabel("minutes from start")
        for row in range(4):
            if warmup:
                axes[row][col].axvspan(0, warmup / 60, color="#dddddd", alpha=0.5, lw=0)
            axes[row][col].grid(alpha=0.3)
    for row, label in enumerate(
        ("arrivals / min", "queue wait (s) by arrival minute", "queue (requests)", "instances")
    ):
        axes[row][0].set_ylabel(label)
    for row in (1, 2, 3):
        axes[row][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{trace.name} · pool {pool.name} · SLA {pool.sla.target:.0%} ≤ {pool.sla.max_wait:g}s"
        + (" · grey = warm-up (not counted)" if warmup else ""), fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
