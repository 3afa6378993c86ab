"""Reports for people: a rich table per pool, a total, the recommendation; the output folder.

The ``--json`` document is built by ``study`` (no rich, no matplotlib: scripts that only want
JSON do not pay for them); this module loads rich, and the PNG module loads matplotlib only
when ``--out`` asks for the picture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscaler.simulations.study import Row, Study

if TYPE_CHECKING:  # rich loads on use
    from rich.table import Table


def _money(value: float) -> str:
    return f"{value:,.2f}"


def pool_table(study: Study, pool_index: int, trace_path: Path) -> Table:
    from rich.table import Table

    pool = study.pools[pool_index]
    rows = study.pool_rows(pool.name)
    first = rows[0].runs[0].result
    sla = pool.sla
    seeds = study.seeds
    title = (
        f"pool {pool.name!r} on {trace_path.name}: {first.requests:,} counted requests over "
        f"{first.counted_s / 3600:.2f} h, SLA {sla.target:.1%} within {sla.max_wait:g}s, "
        + (f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {_seed_text(seeds)}")
        + (f", first {study.warmup_s:g}s not counted" if study.warmup_s else "")
    )
    out = Table(title=title, caption=_caption(study, pool.name))
    many = len(seeds) > 1
    columns = ["policy", "SLA mean" if many else "SLA met"] + (["SLA worst"] if many else []) + [
        "p99 s", "inst-h", "cost $", "$/h", "$/month", "spot $", "on-demand $", "actions",
        "preempt", "failed launches", "re-queued"]
    for name in columns:
        out.add_column(name, justify="left" if name == "policy" else "right",
                       no_wrap=name == "policy")
    for row in rows:
        out.add_row(*_cells(row, many))
    bound = next(b for b in study.bounds if b.pool == pool.name)
    out.add_row("[dim]lower bound (reference)[/dim]", *([""] * (2 if many else 1)), "", "",
                _money(bound.cost_usd), _money(bound.cost_per_hour_usd),
                _money(bound.cost_per_hour_usd * 720), "", "", "", "", "", "")
    return out


def _cells(row: Row, many: bool) -> list[str]:
    data = row.as_json()
    met = "green" if row.meets else "red"
    name = f"[dim]{row.policy} (reference)[/dim]" if row.reference else row.policy
    worst = f"[{met}]{row.attainment_worst:.2%}[/{met}]"
    mean = f"{row.attainment_mean:.2%}"
    attainment = [mean, worst] if many else [worst]
    return [
        name, *attainment, f"{data['wait_p99_s_worst']:.2f}",
        f"{data['instance_hours_mean']:.2f}", _money(row.mean("cost_usd")),
        _money(data["cost_per_hour_usd"]), _money(data["cost_per_month_usd"]),
        _money(data["cost_spot_usd_mean"]), _money(data["cost_on_demand_usd_mean"]),
        f"{row.mean('scale_actions'):.0f}", str(data["preemptions"]),
        str(data["launch_failures"]), str(data["requeued"]),
    ]


def _seed_text(seeds: tuple[int, ...]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def _caption(study: Study, pool: str) -> str:
    bound = next(b for b in study.bounds if b.pool == pool)
    parts = [f"lower bound cost ${bound.cost_usd:.2f}; cost columns are means over the seeds, "
             "$/h and $/month at this trace's rate; counts are summed over the seeds"]
    for row in study.pool_rows(pool):
        unserved = sum(r.unserved for r in row.results)
        if unserved:
            parts.append(f"{row.policy}: {unserved} never served")
    return "; ".join(parts)


def total_table(study: Study) -> Table:
    from rich.table import Table

    out = Table(title=f"total over {len(study.pools)} pools (attainment weighted by requests)")
    for name in ("policy", "SLA mean", "SLA worst", "every pool meets", "cost $", "$/h",
                 "$/month", "spot $", "on-demand $"):
        out.add_column(name, justify="left" if name == "policy" else "right")
    for total in study.totals():
        d = total.as_json()
        out.add_row(
            d["policy"], f"{d['sla_attainment_mean']:.2%}", f"{d['sla_attainment_worst']:.2%}",
            "yes" if d["every_pool_meets_sla_every_seed"] else "no",
            _money(d["cost_usd_mean"]), _money(d["cost_per_hour_usd"]),
            _money(d["cost_per_month_usd"]), _money(d["cost_spot_usd_mean"]),
            _money(d["cost_on_demand_usd_mean"]),
        )
    return out


def _reserved(d: dict[str, Any]) -> str:
    """`` + reserved $X`` when the pool commits to reserved instances (billed used or not)."""
    cost = d.get("cost_reserved_usd_mean", 0.0)
    return f" + reserved ${cost:,.2f}" if cost else ""


def recommendation_lines(study: Study) -> list[str]:
    """One line per pool: what to deploy, or that nothing deployable met the SLA."""
    lines = []
    every = "seed" if len(study.seeds) == 1 else f"all {len(study.seeds)} seeds"
    for pool in study.pools:
        best = study.recommend(pool.name)
        if best is None:
            closest = max((r for r in study.pool_rows(pool.name) if not r.reference),
                          key=lambda r: r.attainment_worst, default=None)
            hint = "" if closest is None else (
                f" (closest: {closest.policy}, worst seed {closest.attainment_worst:.2%})")
            lines.append(f"pool {pool.name!r}: no deployable policy meets "
                         f"{pool.sla.target:.1%} on {every}{hint}")
            continue
        d = best.as_json()
        lines.append(
            f"pool {pool.name!r}: deploy {best.policy}: worst seed {best.attainment_worst:.2%} "
            f">= {pool.sla.target:.1%} on {every}, ${d['cost_per_hour_usd']:,.2f}/h, "
            f"${d['cost_per_month_usd']:,.0f} per 30-day month "
            f"(spot ${d['cost_spot_usd_mean']:,.2f} + on-demand "
            f"${d['cost_on_demand_usd_mean']:,.2f}{_reserved(d)} over the trace)"
        )
    return lines


def print_report(study: Study, traces: dict[str, Path]) -> None:
    """To stdout; wide enough for every column even when piped (rich assumes 80 then)."""
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=170)
    for k, pool in enumerate(study.pools):
        console.print(pool_table(study, k, traces[pool.name]))
    if len(study.pools) > 1:
        console.print(total_table(study))
    for line in recommendation_lines(study):
        console.print("recommendation: " + line, highlight=False, markup=False, soft_wrap=True)
    for line in budget_lines(study):
        console.print("budget: " + line, highlight=False, markup=False, soft_wrap=True)


def budget_lines(study: Study) -> list[str]:
    """Per pool, policy and budget scope: what the run spent of the monthly budget (mean over
    the seeds), the levels it reached and on how many ticks the hard cap held scale-out."""
    lines = []
    for pool in study.pools:
        for row in study.pool_rows(pool.name):
            uses = [r.budget for r in row.results if r.budget]
            if not uses:
                continue
            for k, first in enumerate(uses[0]):
                scoped = [u[k] for u in uses]
                spent = sum(u.spent_usd for u in scoped) / len(scoped)
                levels = sorted({lv for u in scoped for lv, _t in u.alerts})
                held = sum(u.held_ticks for u in scoped)
                lines.append(
                    f"pool {pool.name!r} {row.policy}: {first.scope} spent ${spent:,.2f} of "
                    f"${first.monthly_usd:,.2f} ({spent / first.monthly_usd:.1%}) over the "
                    f"trace; levels reached: {', '.join(levels) or 'none'}; scale-out held by "
                    f"the hard cap on {held} ticks"
                )
    return lines


def write_outputs(
    out_dir: Path, study: Study, document: dict[str, Any], traces: dict[str, Path]
) -> list[Path]:
    """``results.json`` and one timeline PNG per pool in ``out_dir``; returns their paths."""
    from autoscaler.simulations.plots import plot_pool

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    paths = [json_path]
    for pool in study.pools:
        name = "timeline.png" if len(study.pools) == 1 else f"timeline-{pool.name}.png"
        plot_pool(out_dir / name, study, pool, traces[pool.name].name)
        paths.append(out_dir / name)
    return paths
