"""``autoscaler keda-scaler``: KEDA's external-scaler gRPC service (the optional extra
``keda``)."""

from __future__ import annotations

import asyncio
import sys

import click

from autoscaler.cli.common import EXIT_INVALID, config_or_exit
from autoscaler.ports.provider import missing_extra
from autoscaler.runtime.logs import configure_logging


@click.command("keda-scaler")
@click.option("--config", "-c", "config_path", required=True,
              type=click.Path(dir_okay=False), help="The YAML config file.")
@click.option("--listen", default="127.0.0.1:9090", show_default=True,
              help="HOST:PORT of the gRPC service (0.0.0.0:PORT to serve KEDA in a cluster).")
def keda_scaler(config_path: str, listen: str) -> None:
    """Serve each pool's guarded desired instance count to KEDA (a ScaledObject trigger of
    type `external` with metadata `pool: NAME`); this process never resizes anything."""
    missing = missing_extra("autoscaler keda-scaler", "keda", ("grpc", "google.protobuf"))
    if missing:
        click.echo(f"error: {missing}", err=True)
        sys.exit(EXIT_INVALID)
    config = config_or_exit(config_path)
    configure_logging(config.controller.log_level)
    from autoscaler.runtime.keda.server import serve_keda

    sys.exit(asyncio.run(serve_keda(config, listen)))
