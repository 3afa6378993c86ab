"""``autoscaler plan``: the cheapest instance type, market mix and policy meeting the SLA.

Thin: options and specs are parsed here, the sweep runs in ``simulations.planner`` (cached,
locally or on Ray), the table and the PNG come from ``simulations.plan_report``. Bad input
exits 2 with its place named, like ``simulate``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from autoscaler.cli.simulate import InputError, _seeds, _warmup
from autoscaler.config.yaml_lines import ConfigFileError


@contextmanager
def _bar(enabled: bool) -> Iterator[tuple[Any, Any]]:
    """(set total, advance) for a rich bar with ETA on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda _n: None), (lambda _n: None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("planning"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task("plan", total=None)
        yield ((lambda n: bar.update(task, total=n)),
               (lambda n: bar.advance(task, n)))


@click.command()
@click.option("-c", "--config", "config_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="the daemon's config file")
@click.option("--trace", "traces", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="a trace to plan for (repeat: the SLA must hold on every one)")
@click.option("--option", "options", required=True, multiple=True, metavar="KEY=V,...",
              help="a candidate: name, slots, price, boot[, spot_price, preemptions_per_hour, "
                   "on_demand_base, reserved_price]; repeat")
@click.option("--policy", "policies", multiple=True, metavar="SPEC",
              help="kind[:k=v,...]; repeat (default: every built-in policy over a small grid)")
@click.option("--seeds", "seeds", default="0", show_default=True, callback=_seeds,
              metavar="0-2|0,2,5", help="seeds to run every candidate on")
@click.option("--warmup", default="0", show_default=True, callback=_warmup,
              help="requests arriving before this are simulated but not counted")
@click.option("--pool", "pool_name", default=None, help="the pool to plan (if several)")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="run the simulations as Ray tasks ('auto' starts a local Ray)")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="local processes (default: CPU count)")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="result cache (default: $XDG_CACHE_HOME/autoscaler/plan)")
@click.option("--no-cache", is_flag=True, help="neither read nor write the cache")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON only")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write plan.json, frontier.png and snippet.yaml here")
def plan(
    config_path: str, traces: Sequence[str], options: Sequence[str], policies: Sequence[str],
    seeds: tuple[int, ...], warmup: float, pool_name: str | None, ray_address: str | None,
    workers: int | None, cache_dir: str | None, no_cache: bool, as_json: bool,
    out_dir: str | None,
) -> None:
    """Simulate every option x policy on every trace and seed; report the cheapest setup
    meeting the SLA, the cost/attainment Pareto frontier and the pool blocks to deploy."""
    from autoscaler.simulations.options import parse_option
    from autoscaler.simulations.planner import Request, run_plan
    from autoscaler.simulations.specs import SpecError
    from autoscaler.simulations.sweeps import Cache, default_cache_dir
    from autoscaler.simulations.traces import TraceError

    try:
        parsed = tuple(parse_option(o) for o in options)
    except SpecError as exc:
        raise InputError(str(exc)) from None
    names = [o.name for o in parsed]
    if len(set(names)) != len(names):
        raise InputError(f"--option: names must differ (got {', '.join(names)})")
    request = Request(Path(config_path), tuple(Path(t) for t in traces), parsed,
                      tuple(policies), seeds, warmup, pool_name)
    cache = Cache(None if no_cache else Path(cache_dir) if cache_dir else default_cache_dir())
    try:
        with _bar(not as_json) as (total, advance):
            result = run_plan(request, cache, workers=workers, ray_address=ray_address,
                              on_total=total, on_done=advance)
    except (ConfigFileError, TraceError, SpecError) as exc:
        raise InputError(str(exc)) from None
    except (RuntimeError, ConnectionError) as exc:  # no Ray, or Ray failing to start/connect
        raise click.ClickException(str(exc)) from None
    document = result.document()
    if as_json:
        click.echo(json.dumps(document))
    else:
        from autoscaler.simulations.plan_report import print_plan

        print_plan(result)
        if cache.hits:
            click.echo(f"{cache.hits} of {len(result.candidates) * len(traces) * len(seeds)} "
                       "simulations from the cache", err=True)
    if out_dir is not None:
        from autoscaler.simulations.plan_report import write_plan

        paths = write_plan(Path(out_dir), result, document)
        if not as_json:
            click.echo("wrote " + ", ".join(str(p) for p in paths))
