"""``autoscaler run`` (the daemon) and ``autoscaler demo`` (what ``make run`` runs)."""

from __future__ import annotations

import asyncio
import sys

import click

from autoscaler.cli.common import config_or_exit
from autoscaler.runtime.app import run_daemon
from autoscaler.runtime.logs import configure_logging


@click.command()
@click.option("--config", "-c", "config_path", required=True,
              type=click.Path(dir_okay=False), help="The YAML config file.")
@click.option("--dry-run", is_flag=True, help="Decide and log, but never resize a group.")
@click.option("--once", is_flag=True,
              help="Run one tick, print one JSON line per pool on stdout, exit.")
@click.option("--watch-config", is_flag=True,
              help="Reload the config when the file changes (SIGHUP always reloads).")
@click.option("--record", "record_dir", default=None, type=click.Path(file_okay=False),
              help="Write what each pool observed under DIR/<pool>/ as traces that "
              "`autoscaler simulate --trace` replays (rate-*.csv) plus observations-*.csv.")
def run(config_path: str, dry_run: bool, once: bool, watch_config: bool,
        record_dir: str | None) -> None:
    """Run the autoscaler daemon on a config file (JSON logs on stderr).

    SIGHUP reloads the file between ticks; an invalid file keeps the running config."""
    if once and record_dir is not None:
        raise click.BadParameter("records a running daemon; not with --once",
                                 param_hint="--record")
    config = config_or_exit(config_path)
    configure_logging(config.controller.log_level)
    sys.exit(asyncio.run(run_daemon(config, dry_run=dry_run, once=once,
                                    config_path=config_path, watch_config=watch_config,
                                    record_dir=record_dir)))


@click.command()
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds of load to generate.")
@click.option("--seed", default=7, show_default=True, type=int, help="Load generator seed.")
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
@click.option("--policy", default=None, help="Policy kind (default: sla, else threshold).")
def demo(duration: float, seed: int, plain: bool, policy: str | None) -> None:
    """Run the whole loop on an embedded config with a bursty load (REDIS_URL: use Redis)."""
    from autoscaler.emulator.demo import run_demo

    sys.exit(asyncio.run(run_demo(duration=duration, seed=seed, plain=plain, policy=policy)))
