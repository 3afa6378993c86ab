"""What the daemon-starting commands share: load the config or exit 2 naming every problem."""

from __future__ import annotations

import re
import sys

import click

from autoscaler.config.models import Config, load_config
from autoscaler.config.yaml_lines import ConfigFileError

EXIT_INVALID = 2

_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^@\s]*:[^\s]*@")


def argv_secret_warnings(config: Config) -> list[str]:
    """One warning per group whose ``command`` carries a URL with a password: an argv is
    readable by every local user (``/proc/PID/cmdline``, ``ps``). Only a warning, since a
    worker other than ``autoscaler worker`` may know no other way; the message names the
    group and argument position, never the URL."""
    warnings = []
    for pool in config.pools:
        for group in pool.groups:
            command = getattr(group.settings, "command", None) or ()
            for position, arg in enumerate(command):
                if isinstance(arg, str) and _URL_WITH_PASSWORD.search(arg):
                    warnings.append(
                        f"warning: pool {pool.name!r} group {group.name!r}: command argument "
                        f"{position} is a URL with a password, readable by any local user in "
                        "the process list; drop it (autoscaler worker reads "
                        "AUTOSCALER_QUEUE_URL, which the local provider sets) or use the "
                        "group's env"
                    )
                    break
    return warnings


def config_or_exit(path: str) -> Config:
    """The validated config, or every ``file:line: field: message`` on stderr and exit 2 (the
    status systemd's ``RestartPreventExitStatus`` keeps from restarting into a config error)."""
    try:
        config = load_config(path)
    except ConfigFileError as exc:
        for message in exc.messages:
            click.echo(message, err=True)
        sys.exit(EXIT_INVALID)
    for warning in argv_secret_warnings(config):
        click.echo(f"{path}: {warning}", err=True)
    return config
