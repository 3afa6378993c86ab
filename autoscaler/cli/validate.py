"""``autoscaler validate``: check config files without touching any queue or cloud.

A file passes only if ``autoscaler run`` would accept it: first the config model (the same
``load_config``, with ``file:line: field`` messages), then everything ``run`` checks when it
wires the config (e.g. a provider kind that refuses to build a client for an account's
settings), by the same ``Daemon.build`` that ``run`` uses - not a copy of its rules - closed
without being started. Building does no I/O (Redis clients connect on first use, instances start
at the first resize), so validate connects to nothing. Not covered, because only the running
environment can say: a metrics port already taken, an unreachable queue, a worker program that
is not installed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from autoscaler.cli.common import argv_secret_warnings
from autoscaler.config.budget import BudgetConfig
from autoscaler.config.durations import format_duration
from autoscaler.config.models import Config, load_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.registry import Registry

EXIT_INVALID = 2


def _budget(budget: BudgetConfig | None) -> str:
    if budget is None:
        return ""
    return (f"; budget ${budget.monthly_usd:,.2f}/month, alert at {budget.alert_at:.0%}"
            f"{', hard cap' if budget.hard_cap else ''}{', webhook' if budget.webhook else ''}")


def summarize(config: Config) -> list[str]:
    """One line per pool: enough to see that the file says what its author meant."""
    lines = [f"controller: interval {format_duration(config.controller.interval)}, "
             f"metrics on {config.controller.metrics_address}{_budget(config.budget)}"]
    for pool in config.pools:
        groups = ", ".join(
            f"{g.name} ({g.provider}, {g.market.value}, ${g.hourly_price:g}/h"
            f"{f', min {g.min}' if g.min else ''})" for g in pool.groups
        )
        timeout = pool.capacity.boot_timeout_s
        spot = f", boot timeout {format_duration(timeout)}" if timeout is not None else ""
        if pool.capacity.on_demand_base:
            spot += f", on-demand base {pool.capacity.on_demand_base}"
        lines.append(
            f"pool {pool.name}: queue {pool.queue.kind}; "
            f"SLA {pool.sla.target:.2%} within {format_duration(pool.sla.max_wait)}; "
            f"{pool.capacity.min}..{pool.capacity.max} instances x "
            f"{pool.capacity.slots_per_instance} slots, "
            f"boot {format_duration(pool.capacity.boot_time)}{spot}; "
            f"policy {pool.policy.kind}; groups: {groups}{_budget(pool.budget)}"
        )
    return lines


def refusal(
    config: Config, registries: dict[str, Registry[Any]] | None = None
) -> str | None:
    """The message ``autoscaler run`` would refuse a loaded ``config`` with (it prints it as
    ``error: <message>`` and exits 2), or ``None`` if it would start."""
    from autoscaler.runtime.app import BuildError, Daemon

    async def build_and_close() -> str | None:
        try:
            daemon = Daemon.build(config, registries=registries, dry_run=True)
        except BuildError as exc:
            return str(exc)
        await daemon.close(0.0)  # never started: nothing to drain, clients never connected
        return None

    return asyncio.run(build_and_close())


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
def validate(files: tuple[str, ...], quiet: bool) -> None:
    """Validate config FILES; exit 2 with file:line messages if any is invalid."""
    failed = False
    for path in files:
        try:
            config = load_config(path)
        except ConfigFileError as exc:
            failed = True
            for message in exc.messages:
                click.echo(message, err=True)
            continue
        for warning in argv_secret_warnings(config):
            click.echo(f"{path}: {warning}", err=True)
        refused = refusal(config)
        if refused is not None:
            failed = True
            click.echo(f"{path}: error: {refused}", err=True)
            continue
        if not quiet:
            click.echo(f"{path}: OK")
            for line in summarize(config):
                click.echo(f"  {line}")
    sys.exit(EXIT_INVALID if failed else 0)
