"""What the daemon-starting commands share: load the config or exit 2 naming every problem."""

from __future__ import annotations

import sys

import click

from autoscaler.config.models import Config, load_config
from autoscaler.config.yaml_lines import ConfigFileError

EXIT_INVALID = 2


def config_or_exit(path: str) -> Config:
    """The validated config, or every ``file:line: field: message`` on stderr and exit 2 (the
    status systemd's ``RestartPreventExitStatus`` keeps from restarting into a config error)."""
    try:
        return load_config(path)
    except ConfigFileError as exc:
        for message in exc.messages:
            click.echo(message, err=True)
        sys.exit(EXIT_INVALID)
