"""``autoscaler simulate`` and ``autoscaler tune``: replay a trace through the decision core.

Both read the daemon's own config file, so what was simulated is what will run. Errors in the
config, the trace or a ``--policy``/``--grid`` spec are reported with their place (file:line,
or the spec text) and exit 2, without a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from autoscaler.config.durations import parse_duration
from autoscaler.config.yaml_lines import ConfigFileError


class InputError(click.ClickException):
    """Bad config, trace or spec: exit 2 like click's usage errors, message only."""

    exit_code = 2


def _fail(message: str) -> click.ClickException:
    return InputError(message)


def _warmup(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Callable[[str, float, float], None]]:
    """A rich bar on stderr when asked for and stderr is a terminal; a no-op otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _label, _done, _total: None
        return
    # rich loads only for a terminal: `--json` runs are start-up bound and skip it.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )
    tasks: dict[str, Any] = {}
    with bar:
        def update(label: str, done: float, total: float) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(f"{what} {label}", total=total or 1.0)
            bar.update(tasks[label], completed=done, total=total or 1.0)

        yield update


_common = [
    click.option("-c", "--config", "config_path", required=True,
                 type=click.Path(exists=True, dir_okay=False), help="the daemon's config file"),
    click.option("--trace", "trace_path", required=True,
                 type=click.Path(exists=True, dir_okay=False),
                 help="canonical/Azure/rate CSV or JSON lines (see README)"),
    click.option("--pool", "pool_name", default=None, help="pool to simulate (if several)"),
    click.option("--seed", default=0, show_default=True, type=int,
                 help="seeds boot spread, spot preemptions and rate-series arrivals"),
    click.option("--warmup", default="0", show_default=True, callback=_warmup,
                 help="requests arriving before this are simulated but not counted"),
]


def _with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        func = option(func)
    return func


def _session(config_path: str, trace_path: str, pool: str | None, warmup: float, seed: int) -> Any:
    from autoscaler.simulations.session import open_session
    from autoscaler.simulations.specs import SpecError
    from autoscaler.simulations.traces import TraceError

    try:
        return open_session(config_path, trace_path, pool, warmup_s=warmup, seed=seed)
    except (ConfigFileError, TraceError, SpecError) as exc:
        raise _fail(str(exc)) from None


@click.command()
@_with_common
@click.option("--policy", "policies", multiple=True, metavar="SPEC",
              help="kind[:k=v,...]; repeat to compare (default: the pool's policy); "
                   "'oracle' is a look-ahead reference")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON only")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write results.json and timeline.png here")
def simulate(
    config_path: str, trace_path: str, pool_name: str | None, seed: int, warmup: float,
    policies: Sequence[str], as_json: bool, out_dir: str | None,
) -> None:
    """Replay a recorded trace through the same decision core the daemon runs."""
    from autoscaler.simulations.report import document, print_table, write_outputs
    from autoscaler.simulations.specs import PolicySpec, SpecError, parse_spec

    session = _session(config_path, trace_path, pool_name, warmup, seed)
    try:
        specs = [parse_spec(p) for p in policies] or [PolicySpec(session.pool.policy.kind)]
        for spec in specs:
            session.controller(spec)  # validate every spec before the first long run
    except SpecError as exc:
        raise _fail(str(exc)) from None
    runs = []
    with _progress(not as_json, "simulating") as update:
        for spec in specs:
            def report(done: float, total: float, label: str = spec.label) -> None:
                update(label, done, total)

            runs.append(session.run(spec, progress=report))
    if as_json:
        click.echo(json.dumps(document(runs)))
    else:
        print_table(runs, session.pool, session.trace, warmup)
    if out_dir is not None:
        paths = write_outputs(Path(out_dir), runs, session.pool, session.trace, warmup)
        if not as_json:
            click.echo("wrote " + ", ".join(str(p) for p in paths))


@click.command()
@_with_common
@click.option("--policy", "kind", required=True, help="the policy kind to tune")
@click.option("--grid", "grid_entries", multiple=True, required=True, metavar="NAME=V1,V2,...",
              help="values to try for one parameter; repeat for a cartesian product")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="processes (default: CPU count)")
@click.option("--json", "as_json", is_flag=True, help="print every trial as JSON")
def tune(
    config_path: str, trace_path: str, pool_name: str | None, seed: int, warmup: float,
    kind: str, grid_entries: Sequence[str], workers: int | None, as_json: bool,
) -> None:
    """Sweep a policy's parameters; report the cheapest setting meeting the SLA target and
    the cost/attainment Pareto frontier."""
    from autoscaler.simulations.specs import SpecError
    from autoscaler.simulations.tune import (
        cheapest_meeting,
        combinations,
        pareto,
        parse_grid,
        sweep,
    )

    session = _session(config_path, trace_path, pool_name, warmup, seed)
    target = session.pool.sla.target
    try:
        grid = parse_grid(grid_entries)
        total = len(combinations(grid))
        with _progress(not as_json, "tuning") as update:
            count = [0]

            def step(_trial: Any) -> None:
                count[0] += 1
                update(kind, count[0], total)

            trials = sweep(session, config_path, trace_path, kind, grid, workers=workers,
                           on_done=step)
    except SpecError as exc:
        raise _fail(str(exc)) from None
    best = cheapest_meeting(trials, target)
    front = pareto(trials)
    if as_json:
        click.echo(json.dumps({
            "trials": [{"params": t.params, **t.result.as_json()} for t in trials],
            "best": None if best is None else {"params": best.params, **best.result.as_json()},
            "pareto": [{"params": t.params, **t.result.as_json()} for t in front],
        }))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    out = Table(title=f"{kind} on {session.trace.name}: {len(trials)} settings, "
                      f"target {target:.1%} within {session.pool.sla.max_wait:g}s")
    for name in ("params", "SLA met", "p99 s", "cost $", "inst-h", "actions", "note"):
        out.add_column(name, justify="left" if name in ("params", "note") else "right")
    front_ids = {id(t) for t in front}
    for t in sorted(trials, key=lambda t: t.result.cost_usd):
        r = t.result
        notes = [n for n, on in (("best", t is best), ("pareto", id(t) in front_ids)) if on]
        out.add_row(", ".join(f"{k}={v}" for k, v in t.params.items()),
                    f"{r.sla_attainment:.2%}", f"{r.wait_p99_s:.2f}", f"{r.cost_usd:.2f}",
                    f"{r.instance_hours:.2f}", str(r.scale_actions), " ".join(notes))
    console.print(out)
    if best is None:
        console.print(f"[red]no setting meets the target {target:.1%}[/red]")
    else:
        console.print(f"cheapest setting meeting {target:.1%}: "
                      f"{', '.join(f'{k}={v}' for k, v in best.params.items())} "
                      f"(${best.result.cost_usd:.2f}, {best.result.sla_attainment:.2%})")
