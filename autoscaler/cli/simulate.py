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
from click.core import ParameterSource

from autoscaler.config.durations import parse_duration
from autoscaler.config.yaml_lines import ConfigFileError


class InputError(click.ClickException):
    """Bad config, trace or spec: exit 2 like click's usage errors, message only."""

    exit_code = 2


def _fail(message: str) -> click.ClickException:
    return InputError(message)


def _require_simulator() -> None:
    """The simulator's numpy and matplotlib are the ``sim`` extra (the daemon's install stays
    lean): without them, say what to install instead of an ImportError traceback."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise _fail("the simulator is not installed: pip install 'queue-autoscaler[sim]' "
                    "(numpy, matplotlib)") from None


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
    click.option("--warmup", default="0", show_default=True, callback=_warmup,
                 help="requests arriving before this are simulated but not counted"),
]
_TRACE_HELP = "canonical/Azure/rate CSV or JSON lines (see README)"


def _with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        func = option(func)
    return func


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-4`` → 0..4, ``0,2,5`` → those, ``1-3,7`` → 1, 2, 3, 7; duplicates dropped."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise ValueError(f"{part!r} is not a seed or a range like 0-4") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"{part!r}: seeds are non-negative and ranges go up (0-4)")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    if not seeds:
        raise ValueError(f"{text!r}: no seeds")
    return tuple(seeds)


def _seeds(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_seeds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _phase(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else _warmup(_ctx, _param, value)


def pool_traces(
    entries: Sequence[str], names: Sequence[str], pools: Sequence[str]
) -> dict[str, Path]:
    """``--trace PATH`` serves every pool; ``--trace POOL=PATH`` one pool (named once).

    ``names`` are the config's pools (what ``POOL=`` may name), ``pools`` those simulated.
    """
    shared: Path | None = None
    own: dict[str, Path] = {}
    for entry in entries:
        name, sep, rest = entry.partition("=")
        if sep and name in names:
            if name in own:
                raise ValueError(f"--trace {entry!r}: pool {name!r} given twice")
            own[name] = Path(rest)
        elif shared is None:
            shared = Path(entry)
        else:
            raise ValueError(f"--trace {entry!r}: a second trace for every pool; "
                             f"give one per pool as POOL=PATH (pools: {', '.join(pools)})")
    out: dict[str, Path] = {}
    for pool in pools:
        path = own.get(pool, shared)
        if path is None:
            raise ValueError(f"pool {pool!r} has no trace: add --trace {pool}=PATH "
                             f"or one --trace PATH for every pool")
        if not path.is_file():
            raise ValueError(f"--trace {path}: no such file")
        out[pool] = path
    return out


def _session(config_path: str, trace_path: str, pool: str | None, warmup: float, seed: int,
             tick_phase_s: float | None = None, config: Any = None) -> Any:
    from autoscaler.simulations.session import open_session
    from autoscaler.simulations.specs import SpecError
    from autoscaler.simulations.traces import TraceError

    try:
        return open_session(config_path, trace_path, pool, warmup_s=warmup, seed=seed,
                            tick_phase_s=tick_phase_s, config=config)
    except (ConfigFileError, TraceError, SpecError) as exc:
        raise _fail(str(exc)) from None


def _load_config(config_path: str) -> Any:
    from autoscaler.config.models import load_config

    try:
        return load_config(config_path)
    except ConfigFileError as exc:
        raise _fail(str(exc)) from None


@click.command()
@_with_common
@click.option("--trace", "trace_entries", required=True, multiple=True, metavar="[POOL=]PATH",
              help=_TRACE_HELP + "; one for every pool, or POOL=PATH per pool")
@click.option("--pool", "pool_name", default=None,
              help="simulate this pool only (default: every pool of the config)")
@click.option("--seeds", "seeds", default=None, callback=_seeds, metavar="0-4|0,2,5",
              help="run every policy on each seed (spot luck, boot spread, tick phase, "
                   "rate-series arrivals)")
@click.option("--seed", default=0, show_default=True, type=int,
              help="a single seed (same as --seeds N)")
@click.option("--tick-phase", "tick_phase_s", default=None, callback=_phase, metavar="DURATION",
              help="fix where the tick grid falls against the trace (default: drawn per seed)")
@click.option("--policy", "policies", multiple=True, metavar="SPEC",
              help="kind[:k=v,...]; repeat to compare (default: the pool's policy); "
                   "'oracle' is a look-ahead reference")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON only")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write results.json (with provenance) and the timeline PNGs here")
def simulate(
    config_path: str, warmup: float, trace_entries: Sequence[str], pool_name: str | None,
    seeds: tuple[int, ...] | None, seed: int, tick_phase_s: float | None,
    policies: Sequence[str], as_json: bool, out_dir: str | None,
) -> None:
    """Replay a recorded trace through the same decision core the daemon runs, on every pool
    and seed, and recommend the cheapest deployable policy that meets the SLA."""
    _require_simulator()
    from autoscaler.simulations.specs import PolicySpec, SpecError, parse_spec
    from autoscaler.simulations.study import Study

    config = _load_config(config_path)
    names = [p.name for p in config.pools]
    if pool_name is not None and pool_name not in names:
        raise _fail(f"{config_path}: no pool named {pool_name!r} (pools: {', '.join(names)})")
    chosen = names if pool_name is None else [pool_name]
    try:
        traces = pool_traces(trace_entries, names, chosen)
        specs = [parse_spec(p) for p in policies] or [PolicySpec("configured")]
    except (ValueError, SpecError) as exc:
        raise _fail(str(exc)) from None
    ctx = click.get_current_context()
    if seeds is not None and ctx.get_parameter_source("seed") is not ParameterSource.DEFAULT:
        raise _fail("give --seed N or --seeds LIST, not both")
    seed_list = seeds or (seed,)
    study = Study(seed_list, warmup, spec_labels=[s.label for s in specs])
    with _progress(not as_json, "simulating") as update:
        for name in chosen:
            base = _session(config_path, str(traces[name]), name, warmup, seed_list[0],
                            tick_phase_s, config)
            tag = f" {name}" if len(chosen) > 1 else ""
            runs = _run_pool(base, specs, seed_list, tag, update)
            study.add(base.pool, [base.label(s) for s in specs],
                      [not base.deployable(s) for s in specs], runs, base.trace.arrival_s)
    document = study.document()
    if as_json:
        click.echo(json.dumps(document))
    else:
        from autoscaler.simulations.report import print_report

        print_report(study, traces)
    if out_dir is not None:
        from autoscaler.simulations.report import write_outputs
        from autoscaler.simulations.study import provenance

        document["provenance"] = provenance(Path(config_path), traces, study, tick_phase_s)
        paths = write_outputs(Path(out_dir), study, document, traces)
        if not as_json:
            click.echo("wrote " + ", ".join(str(p) for p in paths))


def _run_pool(
    base: Any, specs: Sequence[Any], seeds: Sequence[int], tag: str,
    update: Callable[[str, float, float], None],
) -> list[list[Any]]:
    """``runs[spec][seed]`` of one pool; every spec is checked before the first long run."""
    from autoscaler.simulations.specs import SpecError

    try:
        for spec in specs:
            base.controller(spec)
    except SpecError as exc:
        raise _fail(f"pool{tag}: {exc}" if tag else str(exc)) from None
    runs: list[list[Any]] = [[] for _ in specs]
    for seed in seeds:
        session = _reseed(base, seed)
        for k, spec in enumerate(specs):
            label = session.label(spec) + tag + (f" seed {seed}" if len(seeds) > 1 else "")

            def report(done: float, total: float, label: str = label) -> None:
                update(label, done, total)

            runs[k].append(session.run(spec, progress=report))
    return runs


def _reseed(session: Any, seed: int) -> Any:
    from autoscaler.simulations.traces import TraceError

    try:
        return session.reseeded(seed)
    except TraceError as exc:
        raise _fail(str(exc)) from None


@click.command()
@_with_common
@click.option("--trace", "trace_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help=_TRACE_HELP)
@click.option("--pool", "pool_name", default=None, help="pool to tune (if several)")
@click.option("--seed", default=0, show_default=True, type=int,
              help="seeds boot spread, spot preemptions, tick phase and rate-series arrivals")
@click.option("--policy", "kind", required=True, help="the policy kind to tune")
@click.option("--grid", "grid_entries", multiple=True, required=True, metavar="NAME=V1,V2,...",
              help="values to try for one parameter; repeat for a cartesian product")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="processes (default: CPU count)")
@click.option("--json", "as_json", is_flag=True, help="print every trial as JSON")
def tune(
    config_path: str, warmup: float, trace_path: str, pool_name: str | None, seed: int,
    kind: str, grid_entries: Sequence[str], workers: int | None, as_json: bool,
) -> None:
    """Sweep a policy's parameters; report the cheapest setting meeting the SLA target and
    the cost/attainment Pareto frontier."""
    _require_simulator()
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
