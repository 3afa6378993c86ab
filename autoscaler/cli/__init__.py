"""The ``autoscaler`` command. Subcommands live in their own modules and load on use, so
``autoscaler validate`` does not pay for numpy or the daemon's imports."""

from __future__ import annotations

import importlib
from typing import Any

import click

SUBCOMMANDS: dict[str, str] = {
    "run": "autoscaler.cli.run:run",
    "demo": "autoscaler.cli.run:demo",
    "validate": "autoscaler.cli.validate:validate",
    "worker": "autoscaler.cli.worker:worker",
    "policies": "autoscaler.cli.policies:policies",
    "simulate": "autoscaler.cli.simulate:simulate",
    "tune": "autoscaler.cli.simulate:tune",
    "plan": "autoscaler.cli.plan:plan",
    "keda-scaler": "autoscaler.cli.keda:keda_scaler",
    "explain": "autoscaler.cli.explain:explain",
    "pause": "autoscaler.cli.pause:pause",
    "resume": "autoscaler.cli.pause:resume",
    "schema": "autoscaler.cli.schema:schema",
    "produce": "autoscaler.cli.produce:produce",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command: Any = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="queue-autoscaler")
def main() -> None:
    """Scale GPU inference fleets on queue wait time against an SLA."""
