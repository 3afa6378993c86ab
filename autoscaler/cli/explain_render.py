"""``autoscaler explain``'s text output: one block per pool, with rich, readable at 80 columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _num(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _observed(p: dict[str, Any]) -> str:
    o = p["observation"]
    sla = p["sla"]
    if o is None:
        return "queue: not sampled"
    parts = [f"depth {o['depth']}", f"oldest wait {_num(o['oldest_wait_s'], ' s')} "
             f"(SLA {sla['max_wait_s']:g} s for {sla['target']:.1%})",
             f"in flight {_num(o['in_flight'])}",
             f"arrivals {_num(o['arrival_rate'], '/s')}",
             f"completions {_num(o['completion_rate'], '/s')}"]
    stale = "" if o["fresh"] else " [STALE: the last sample failed]"
    return "queue: " + ", ".join(parts) + stale


def _terms(terms: dict[str, Any]) -> Table:
    table = Table(show_header=True, box=None, padding=(0, 2, 0, 4))
    table.add_column("term")
    table.add_column("value", overflow="fold")
    for key, value in terms.items():
        table.add_row(key, _num(value, digits=3) if isinstance(value, float) else str(value))
    return table


def _allocation(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(show_header=True, box=None, padding=(0, 1, 0, 4))
    for name, justify in (("group", "left"), ("now", "right"), ("target", "right"),
                          ("why", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        now = f"{r['desired']} ({r['running']} run"
        now += f", {r['booting']} boot" if r["booting"] else ""
        now += f", {r['pending']} pend" if r["pending"] else ""
        now += f", {r['draining']} drain" if r["draining"] else ""
        table.add_row(r["group"], now + ")", str(r["target"]), r["why"])
    return table


def render(pools: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    for p in pools:
        title = Text(f"pool {p['pool']}", style="bold")
        if p["paused"]:
            title.append("  PAUSED: decided, not actuated", style="bold yellow")
        console.rule(title)
        console.print(_observed(p), markup=False)
        for error in p["errors"]:
            console.print(Text(f"not decided: {error}", style="red"))
        if "decision" not in p:
            continue
        pol = p["policy"]
        console.print(Text(f"policy {p['policy_kind']} recommends {pol['desired']}: ",
                           style="bold").append(pol["reason"], style=""))
        if pol["terms"]:
            console.print(_terms(pol["terms"]))
        cap = p["capacity"]
        console.print(f"guards (min {cap['min']}, max {cap['max']}): " +
                      ("; ".join(p["guards"]) if p["guards"] else "changed nothing"),
                      markup=False)
        if p["cross_pool"]:
            console.print("cross-pool: " + "; ".join(p["cross_pool"]), markup=False)
        for b in p["budget"]:
            allowance = b["allowance_usd_per_h"]
            console.print(
                f"budget {b['scope']}: ${b['spent_usd']:,.2f} of ${b['monthly_usd']:,.2f} in "
                f"{b['month']} ({b['used_ratio']:.1%})" + (
                    f", hard cap: ${allowance:,.2f}/h for the rest of the month"
                    if allowance is not None else ""), markup=False)
        d = p["decision"]
        verdict = "would resize" if d["would_act"] else (
            "paused: would not resize" if p["paused"] else "no resize needed")
        console.print(Text(f"decision: {d['current']} -> {d['desired']} ({d['direction']}), "
                           f"{verdict}", style="bold"))
        console.print(_allocation(p["allocation"]))
