"""Whole-config checks that need every pool at once (kept out of ``models`` for its size)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoscaler.config.plugins import field_error
from autoscaler.registry import Registry

if TYPE_CHECKING:
    from autoscaler.config.models import Config


def one_pool_per_queue(config: Config, sources: Registry[Any]) -> None:
    """Two pools on one queue would each scale for the whole queue: twice the capacity, and
    two controllers fighting. A queue is its kind, its sampler's server (``sampler_key``) and
    its ``key``, ``group`` and ``prefix`` (two consumer groups of one stream are two queues, and
    so are two RQ queues of one name under different key prefixes), or what its settings'
    ``queue_identity()`` returns for kinds that name a queue otherwise.

    Not checked: ``memory`` queues (in-process; simulations give every pool the default name
    and each pool gets its own simulated queue), and a source kind without ``sampler_key``."""
    seen: dict[tuple[Any, ...], str] = {}
    for index, pool in enumerate(config.pools):
        settings = pool.queue.settings
        sampler_key = getattr(sources.get(pool.queue.kind), "sampler_key", None)
        if pool.queue.kind == "memory" or sampler_key is None:
            continue
        identity = getattr(settings, "queue_identity", None)  # kinds without key/name/group
        queue = (
            pool.queue.kind,
            sampler_key(settings),
            getattr(settings, "key", None), getattr(settings, "name", None),
            getattr(settings, "group", None), getattr(settings, "prefix", None),
            identity() if callable(identity) else None,
        )
        if queue in seen:
            raise field_error(
                "config", ("pools", index, "queue"),
                f"pool {pool.name!r} uses the same queue as pool {seen[queue]!r}", pool.name,
            )
        seen[queue] = pool.name
