"""``autoscaler pause POOL`` and ``autoscaler resume POOL``: stop and restart actuation of one
pool on every replica, through the state store (``autoscaler.runtime.pause``).

A paused pool is still sampled and decided (logs and metrics keep flowing, with
``autoscaler_pool_paused{pool} 1``); its groups are never resized until it is resumed. The
pause has no expiry: it outlives restarts until ``resume``. ``pause`` without a pool lists the
paused pools.

Exit codes: 0 done (or nothing to do), 1 the state store could not be reached, 2 a bad config,
an unknown pool or no state store server to share the pause through.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click

from autoscaler.cli.common import EXIT_INVALID, config_or_exit
from autoscaler.config.models import Config
from autoscaler.ports.state_store import StateStoreError
from autoscaler.runtime.extensions import pause_store
from autoscaler.runtime.pause import PauseStore

CONFIG_OPTION = click.option("--config", "-c", "config_path", required=True,
                             type=click.Path(dir_okay=False), help="The YAML config file.")


def _store(config: Config, pool: str | None) -> PauseStore:
    if pool is not None and pool not in {p.name for p in config.pools}:
        names = ", ".join(p.name for p in config.pools)
        click.echo(f"error: no pool named {pool!r} (pools: {names})", err=True)
        sys.exit(EXIT_INVALID)
    store = pause_store(config)
    if store is None:
        click.echo("error: pausing needs a Redis server shared by every replica: set "
                   "controller.state_store.url, or put a pool on a Redis queue", err=True)
        sys.exit(EXIT_INVALID)
    return store


async def _run(store: PauseStore, action: str, pool: str | None, reason: str) -> int:
    try:
        if action == "list":
            paused = await store.paused()
            for name in sorted(paused):
                info = paused[name]
                since = info.get("since")
                when = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
                        if isinstance(since, int | float) else "?")
                click.echo(json.dumps({"pool": name, "since": when,
                                       "reason": info.get("reason", "")}))
            return 0
        assert pool is not None
        if action == "pause":
            done = await store.pause(pool, since=time.time(), reason=reason)
            click.echo(f"pool {pool} paused" if done else f"pool {pool} was already paused",
                       err=True)
        else:
            done = await store.resume(pool)
            click.echo(f"pool {pool} resumed" if done else f"pool {pool} was not paused",
                       err=True)
        return 0
    except StateStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    finally:
        await store.close()


@click.command()
@click.argument("pool", required=False)
@CONFIG_OPTION
@click.option("--reason", default="", help="Recorded with the pause and logged by the daemon.")
def pause(pool: str | None, config_path: str, reason: str) -> None:
    """Stop resizing POOL's groups (it is still sampled and decided); no POOL: list paused."""
    config = config_or_exit(config_path)
    store = _store(config, pool)
    sys.exit(asyncio.run(_run(store, "pause" if pool else "list", pool, reason)))


@click.command()
@click.argument("pool")
@CONFIG_OPTION
def resume(pool: str, config_path: str) -> None:
    """Resize POOL's groups again from the next tick."""
    config = config_or_exit(config_path)
    store = _store(config, pool)
    sys.exit(asyncio.run(_run(store, "resume", pool, "")))
