"""``autoscaler keda-scaler``: KEDA's external-scaler gRPC service (the optional extra
``keda``)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import click

from autoscaler.config.models import load_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.runtime.app import EXIT_INVALID
from autoscaler.runtime.logs import configure_logging


@click.command("keda-scaler")
@click.option("--config", "-c", "config_path", required=True,
              type=click.Path(dir_okay=False), help="The YAML config file.")
@click.option("--listen", default="127.0.0.1:9090", show_default=True,
              help="HOST:PORT of the gRPC service (0.0.0.0:PORT to serve KEDA in a cluster).")
def keda_scaler(config_path: str, listen: str) -> None:
    """Serve each pool's guarded desired instance count to KEDA (a ScaledObject trigger of
    type `external` with metadata `pool: NAME`); this process never resizes anything."""
    missing = [m for m in ("grpc", "google.protobuf") if importlib.util.find_spec(m) is None]
    if missing:
        click.echo("error: autoscaler keda-scaler needs grpcio and protobuf: "
                   "pip install 'queue-autoscaler[keda]'", err=True)
        sys.exit(EXIT_INVALID)
    try:
        config = load_config(config_path)
    except ConfigFileError as exc:
        for message in exc.messages:
            click.echo(message, err=True)
        sys.exit(EXIT_INVALID)
    configure_logging(config.controller.log_level)
    from autoscaler.runtime.keda.server import serve_keda

    sys.exit(asyncio.run(serve_keda(config, listen)))
