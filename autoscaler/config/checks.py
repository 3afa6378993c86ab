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
    its ``key``/``name`` and ``group`` (two consumer groups of one stream are two queues)."""
    seen: dict[tuple[Any, ...], str] = {}
    for index, pool in enumerate(config.pools):
        settings = pool.queue.settings
        queue = (
            pool.queue.kind,
            sources.get(pool.queue.kind).sampler_key(settings),
            getattr(settings, "key", None), getattr(settings, "name", None),
            getattr(settings, "group", None),
        )
        if queue in seen:
            raise field_error(
                "config", ("pools", index, "queue"),
                f"pool {pool.name!r} uses the same queue as pool {seen[queue]!r}", pool.name,
            )
        seen[queue] = pool.name
