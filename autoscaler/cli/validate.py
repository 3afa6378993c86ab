"""``autoscaler validate``: check config files without touching any queue or cloud."""

from __future__ import annotations

import sys

import click

from autoscaler.config.durations import format_duration
from autoscaler.config.models import Config, load_config
from autoscaler.config.yaml_lines import ConfigFileError

EXIT_INVALID = 2


def summarize(config: Config) -> list[str]:
    """One line per pool: enough to see that the file says what its author meant."""
    lines = [f"controller: interval {format_duration(config.controller.interval)}, "
             f"metrics on {config.controller.metrics_address}"]
    for pool in config.pools:
        groups = ", ".join(
            f"{g.name} ({g.provider}, {g.market.value}, ${g.hourly_price:g}/h)" for g in pool.groups
        )
        lines.append(
            f"pool {pool.name}: queue {pool.queue.kind}; "
            f"SLA {pool.sla.target:.2%} within {format_duration(pool.sla.max_wait)}; "
            f"{pool.capacity.min}..{pool.capacity.max} instances x "
            f"{pool.capacity.slots_per_instance} slots, "
            f"boot {format_duration(pool.capacity.boot_time)}; "
            f"policy {pool.policy.kind}; groups: {groups}"
        )
    return lines


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
        if not quiet:
            click.echo(f"{path}: OK")
            for line in summarize(config):
                click.echo(f"  {line}")
    sys.exit(EXIT_INVALID if failed else 0)
