"""The timeline PNG of one pool: what to look at first (matplotlib loads only here).

One column per policy (its first seed), on the same time axis and the same y-scales, so a
glance compares them: arrivals per minute; queue wait per arrival minute against the SLA line;
queue depth; the fleet by market and state with spot preemptions marked. Stockout windows are
hatched on every panel. The y-scales ignore the warm-up (shaded grey, not counted), so a cold
start's spike does not flatten the rest. The bottom panel puts every policy on every seed on
one cost-vs-attainment plane, with the SLA target and the lower bound as lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.config.models import PoolConfig
from autoscaler.simulations.engine import MARKETS, Run
from autoscaler.simulations.kernel import F64
from autoscaler.simulations.study import Study

STATE_COLORS = {"booting": "#f2c14e", "running": "#2e86ab", "draining": "#a5a5a5"}
WAIT_LINES = (("p50", "#2e86ab"), ("p95", "#f18f01"), ("p99", "#c73e1d"), ("max", "#5c2a9d"))
POLICY_COLORS = ("#2e86ab", "#c73e1d", "#3b8e3b", "#f18f01", "#5c2a9d", "#8c564b", "#e377c2")
POLICY_MARKERS = ("o", "s", "^", "v", "P", "X", "h")


def per_minute_waits(arrival: F64, waits: F64, minutes: int) -> np.ndarray[Any, Any]:
    """Wait p50/p95/p99/max per arrival minute (NaN for empty minutes)."""
    bins = np.minimum((arrival // 60).astype(np.int64), minutes - 1)
    order = np.argsort(bins, kind="stable")
    edges = np.searchsorted(bins[order], np.arange(minutes + 1))
    out = np.full((minutes, 4), np.nan)
    for m in range(minutes):
        chunk = waits[order[edges[m] : edges[m + 1]]]
        if chunk.size:
            out[m, :3] = np.percentile(chunk, [50, 95, 99])
            out[m, 3] = chunk.max()
    return out


def _top(values: list[F64], floor: float, margin: float = 1.15) -> float:
    """A shared y-limit: the largest finite value (after the warm-up) times ``margin``."""
    finite = [float(np.nanmax(v)) for v in values if v.size and np.isfinite(v).any()]
    return max([floor, *finite]) * margin


def plot_pool(path: Path, study: Study, pool: PoolConfig, trace_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study.pool_rows(pool.name)
    runs = [row.runs[0] for row in rows]
    arrival = study.arrivals[pool.name]
    warm = study.warmup_s / 60
    minutes = max(1, int(np.ceil(max(r.end_s for r in runs) / 60)))
    ncols = len(runs)
    fig = plt.figure(figsize=(max(5.0 * ncols + 1.5, 9.0), 15), layout="constrained")
    grid = fig.add_gridspec(5, ncols, height_ratios=[0.8, 1.3, 0.9, 1.3, 1.7])
    axes = [[fig.add_subplot(grid[r, c]) for c in range(ncols)] for r in range(4)]
    for r in range(4):
        for c in range(1, ncols):
            axes[r][c].sharex(axes[0][0])
            axes[r][c].sharey(axes[r][0])
        if r:
            axes[r][0].sharex(axes[0][0])
    counts = np.bincount((arrival // 60).astype(np.int64), minlength=minutes)[:minutes]
    x = np.arange(minutes)
    after = x >= int(warm)
    waits_pm = [per_minute_waits(arrival, run.waits, minutes) for run in runs]
    for col, (row, run) in enumerate(zip(rows, runs, strict=True)):
        res = run.result
        axes[0][col].bar(x, counts, width=1.0, color="#7a9e7e", align="edge")
        ref = " (reference)" if row.reference else ""
        axes[0][col].set_title(
            f"{res.policy}{ref}, seed {res.seed}\nSLA {res.sla_attainment:.2%} · "
            f"\\${res.cost_usd:,.2f} · \\${res.cost_per_hour_usd:,.2f}/h · "
            f"{res.instance_hours:.1f} inst-h", fontsize=10)
        _waits(axes[1][col], x, waits_pm[col], pool.sla.max_wait)
        tl = run.timeline
        axes[2][col].plot(tl.t / 60, tl.depth, color="#c73e1d", lw=0.8, label="queued")
        _fleet(axes[3][col], run, pool, matplotlib)
    _scales(axes, runs, counts[after], [w[after] for w in waits_pm], warm, pool)
    for col in range(ncols):
        for r in range(4):
            ax = axes[r][col]
            if study.warmup_s:
                ax.axvspan(0, warm, color="#dddddd", alpha=0.6, lw=0)
            _stockouts(ax, pool)
            ax.grid(alpha=0.3)
            if col:
                ax.tick_params(labelleft=False)
        axes[3][col].set_xlabel("minutes from start")
    for r, label in enumerate(("arrivals / min", "queue wait (s) by arrival minute",
                               "queue (requests)", "instances")):
        axes[r][0].set_ylabel(label)
    for r in (1, 2):
        axes[r][-1].legend(fontsize=7, loc="upper right")
    for col in range(ncols):  # markets and states differ between policies
        axes[3][col].legend(fontsize=7, loc="upper right", ncol=2, framealpha=0.8)
    _cost_plane(fig.add_subplot(grid[4, :]), study, pool)
    notes = [f"SLA {pool.sla.target:.1%} ≤ {pool.sla.max_wait:g}s"]
    if study.warmup_s:
        notes.append("grey = warm-up (not counted, not in the y-scales)")
    if any(g.simulation.stockouts for g in pool.groups):
        notes.append("hatched = stockout window")
    fig.suptitle(f"{trace_name} · pool {pool.name} · " + " · ".join(notes), fontsize=12)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _waits(ax: Any, x: np.ndarray[Any, Any], pm: np.ndarray[Any, Any], max_wait: float) -> None:
    for k, (label, color) in enumerate(WAIT_LINES):
        ax.plot(x + 0.5, pm[:, k], label=label, color=color, lw=1.1)
    ax.axhline(max_wait, color="black", ls="--", lw=1, label="SLA max_wait")


def _fleet(ax: Any, run: Run, pool: PoolConfig, matplotlib: Any) -> None:
    tl = run.timeline
    stacks, labels, palette = [], [], []
    for m, market in enumerate(MARKETS):
        for state in ("running", "booting", "draining"):
            series = tl.fleet[:, m, ("booting", "running", "draining").index(state)]
            if series.any():
                stacks.append(series)
                labels.append(f"{market.value} {state}")
                alpha = 1.0 if market == MARKETS[0] else 0.55
                palette.append(matplotlib.colors.to_rgba(STATE_COLORS[state], alpha))
    if stacks:
        ax.stackplot(tl.t / 60, *stacks, labels=labels, colors=palette, step="post")
    ax.plot(tl.t / 60, tl.in_flight / pool.capacity.slots_per_instance, color="black",
            lw=0.7, label="busy slots ÷ slots per instance")
    if run.preemption_log:
        times = np.array([p.time for p in run.preemption_log]) / 60
        ax.plot(times, np.zeros_like(times), ls="none", marker="^", color="#d62728",
                markersize=7, clip_on=False, label=f"preemption notice ({len(times)})")


def _scales(axes: list[list[Any]], runs: list[Run], counts: np.ndarray[Any, Any],
            waits: list[np.ndarray[Any, Any]], warm: float, pool: PoolConfig) -> None:
    """Shared y-limits from the counted part only (row axes are shared, so set once)."""
    axes[0][0].set_ylim(0, _top([counts.astype(np.float64)], 1.0))
    top = _top([w.ravel() for w in waits], pool.sla.max_wait)
    if top > 20 * pool.sla.max_wait:  # long waits: keep the SLA line readable near zero
        from matplotlib.ticker import ScalarFormatter

        axes[1][0].set_yscale("symlog", linthresh=pool.sla.max_wait)
        axes[1][0].yaxis.set_major_formatter(ScalarFormatter())
    axes[1][0].set_ylim(0, top)
    depth = [r.timeline.depth[r.timeline.t >= warm * 60] for r in runs]
    axes[2][0].set_ylim(0, _top(depth, 1.0))
    fleet = [r.timeline.fleet[r.timeline.t >= warm * 60].sum(axis=(1, 2)).astype(np.float64)
             for r in runs]
    axes[3][0].set_ylim(0, _top(fleet, 1.0, margin=1.8))  # room for the legend above the fleet


def _stockouts(ax: Any, pool: PoolConfig) -> None:
    for group in pool.groups:
        for window in group.simulation.stockouts:
            ax.axvspan(window.start / 60, window.end / 60, facecolor="none", hatch="///",
                       edgecolor="#d62728", alpha=0.35, lw=0)


def _cost_plane(ax: Any, study: Study, pool: PoolConfig) -> None:
    """Every policy on every seed: $/h against attainment; cheaper and higher is better."""
    bound = next(b for b in study.bounds if b.pool == pool.name)
    for k, row in enumerate(study.pool_rows(pool.name)):
        color = POLICY_COLORS[k % len(POLICY_COLORS)]
        xs = [r.sla_attainment * 100 for r in row.results]
        ys = [r.cost_per_hour_usd for r in row.results]
        marker = POLICY_MARKERS[k % len(POLICY_MARKERS)]
        name = row.policy + (" (reference, hollow)" if row.reference else "")
        # References hollow, so a policy on the same spot as the oracle stays visible.
        ax.scatter(xs, ys, marker=marker, s=60 if row.reference else 36, linewidths=1.5,
                   facecolors="none" if row.reference else color, edgecolors=color,
                   alpha=0.85, label=f"{name}: {len(xs)} seed{'s' if len(xs) > 1 else ''}")
        ax.scatter([row.attainment_mean * 100], [row.mean("cost_per_hour_usd")], color=color,
                   marker="+", s=160, linewidths=2)
    ax.axvline(pool.sla.target * 100, color="black", ls="--", lw=1, label="SLA target")
    ax.axhline(bound.cost_per_hour_usd, color="#7a7a7a", ls=":", lw=1.2,
               label="lower bound (reference)")
    ax.set_xlabel("SLA attainment, % of counted requests within max_wait (+ = mean over seeds)")
    ax.set_ylabel("cost, \\$ per hour")
    ax.set_title("cost vs attainment, every policy on every seed (better: right and down)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
