"""What ``autoscaler plan`` prints and writes: a rich table, the frontier PNG, the snippet.

rich and matplotlib load only here, so a ``--json`` run imports neither.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from autoscaler.simulations.plan import Candidate, Plan


def print_plan(plan: Plan, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:  # a pipe gets the full table, not 80 squeezed columns
        console = Console(width=None if sys.stdout.isatty() else 150)
    best = plan.best
    front = {id(c) for c in plan.frontier}
    table = Table(title=f"plan: {len(plan.candidates)} candidates on {len(plan.traces)} "
                        f"trace(s) x seeds {','.join(map(str, plan.seeds))}; target "
                        f"{plan.target:.1%} within {plan.max_wait_s:g}s (worst trace and seed)")
    for name in ("option", "policy", "SLA worst", "cost $", "$/h", "$/month", "spot $",
                 "on-demand $", "reserved $", "note"):
        table.add_column(name, justify="left" if name in ("option", "policy", "note")
                         else "right")
    for c in sorted(plan.candidates, key=lambda c: c.cost_usd):
        d = c.as_json()
        notes = [n for n, on in (("best", c is best), ("pareto", id(c) in front)) if on]
        style = "bold green" if c is best else ("" if c.meets else "dim")
        option = c.option.name + (f" ({c.reserved} reserved)" if c.reserved else "")
        table.add_row(option, c.policy, f"{c.attainment_min:.2%}", f"{d['cost_usd']:,.2f}",
                      f"{d['cost_per_hour_usd']:,.2f}", f"{d['cost_per_month_usd']:,.0f}",
                      f"{d['cost_spot_usd']:,.2f}", f"{d['cost_on_demand_usd']:,.2f}",
                      f"{d['cost_reserved_usd']:,.2f}", " ".join(notes), style=style)
    console.print(table)
    for advice in plan.reserved:
        share = ", ".join(f"#{k + 1} {c:.0%}" for k, c in enumerate(advice.coverage))
        console.print(
            f"reserved {advice.option}: commit to {advice.count} instance(s). A reserved "
            f"instance at ${advice.reserved_price:g}/h replaces ${advice.displaced_price:g}/h, "
            f"so it breaks even when needed {advice.ratio:.0%} of the time; share of minutes "
            f"needing instance #k: {share or 'none'}")
    if best is None:
        closest = max(plan.candidates, key=lambda c: c.attainment_min)
        console.print(f"[red]no candidate meets {plan.target:.1%} on every trace and seed; "
                      f"closest: {closest.option.name} {closest.policy} "
                      f"({closest.attainment_min:.2%})[/red]")
        return
    console.print(f"cheapest meeting the SLA: [bold]{best.option.name}[/bold] with "
                  f"{best.policy} (${best.cost_usd:,.2f} over the traces, "
                  f"${best.cost_per_hour_usd:,.2f}/h, worst {best.attainment_min:.2%})")
    if plan.snippet:
        console.print("pool blocks to deploy (point each group at its own instance group):")
        console.print(plan.snippet, markup=False, highlight=False)


def write_plan(out: Path, plan: Plan, document: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "plan.json", out / "frontier.png"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    plot_frontier(plan, paths[1])
    if plan.snippet:
        paths.append(out / "snippet.yaml")
        paths[-1].write_text(plan.snippet)
    return paths


_MARKERS = {"fixed": "s", "threshold": "o", "target-tracking": "^", "step": "D", "sla": "*"}


def plot_frontier(plan: Plan, path: Path) -> None:
    """Cost ($/h) against worst attainment: every candidate, coloured by option, shaped by
    policy; the frontier joined; the target line; the recommendation ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    options = list(dict.fromkeys(c.option.name for c in plan.candidates))
    colors = plt.get_cmap("tab10")
    for c in plan.candidates:
        kind = c.spec.kind or "?"
        ax.scatter(c.cost_per_hour_usd, c.attainment_min * 100,
                   color=colors(options.index(c.option.name) % 10),
                   marker=_MARKERS.get(kind, "x"), s=42, alpha=0.85 if c.meets else 0.45)
    front = sorted(plan.frontier, key=lambda c: c.cost_usd)
    ax.plot([c.cost_per_hour_usd for c in front], [c.attainment_min * 100 for c in front],
            color="black", lw=1, ls="-", label="Pareto frontier")
    ax.axhline(plan.target * 100, color="#d62728", ls="--", lw=1,
               label=f"SLA target {plan.target:.1%}")
    best = plan.best
    if best is not None:
        ax.scatter(best.cost_per_hour_usd, best.attainment_min * 100, s=220,
                   facecolors="none", edgecolors="black", lw=1.5,
                   label=f"best: {_short(best)}")
    for name in options:
        ax.scatter([], [], color=colors(options.index(name) % 10), marker="o", label=name)
    for kind, marker in _MARKERS.items():
        if any(c.spec.kind == kind for c in plan.candidates):
            ax.scatter([], [], color="grey", marker=marker, label=kind)
    low = min(c.attainment_min for c in plan.candidates) * 100
    ax.set_ylim(min(low, plan.target * 100 - 2) - 0.5, 100.2)
    ax.set_xlabel("cost, $/h (mean over seeds, all traces)")
    ax.set_ylabel("SLA attainment, worst trace and seed (%)")
    ax.set_title(f"autoscaler plan: within {plan.max_wait_s:g}s", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def _short(c: Candidate) -> str:
    return f"{c.option.name} {c.policy}"
