"""``autoscaler schema``: the config file's JSON Schema, for editors and CI linters.

Wire it into an editor through yaml-language-server (VS Code's YAML extension, Neovim, Helix):
``autoscaler schema > autoscaler.schema.json`` and a first line
``# yaml-language-server: $schema=./autoscaler.schema.json`` in the config (README).
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the schema to this file instead of stdout.")
@click.option("--indent", default=2, show_default=True, type=click.IntRange(min=0),
              help="JSON indentation (0: one line).")
def schema(output: str | None, indent: int) -> None:
    """Print the config's JSON Schema (draft 2020-12) with every installed plugin's keys."""
    from autoscaler.config.schema import config_schema

    text = json.dumps(config_schema(), indent=indent or None, sort_keys=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
