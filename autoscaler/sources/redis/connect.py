"""One asyncio Redis client for any accepted URL form (``autoscaler.ports.redis_urls``).

``redis://``, ``rediss://`` and ``unix://`` go to redis-py's ``from_url``. A Sentinel URL gives a
client whose connection pool asks the Sentinels for the current master on every new connection,
so after a failover the next tick's reconnect finds the new master (the failed round in
between reports stale data, as for any outage). A Cluster URL gives a ``RedisCluster`` that
learns the slot map from the listed nodes and follows ``MOVED`` redirects.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelManagedSSLConnection

from autoscaler.ports.redis_urls import parse_multi_host, redis_url_kind

RedisClient = aioredis.Redis | RedisCluster


def is_cluster(url: str) -> bool:
    return redis_url_kind(url) == "cluster"


def redis_client(url: str, **options: Any) -> Any:
    """A client for ``url`` with redis-py connection ``options`` (timeouts and the like).

    Typed ``Any`` because the standalone and cluster clients share the commands the callers
    use (``evalsha``, ``pipeline``, ``script_load``, ``aclose``) but no redis-py base class."""
    kind = redis_url_kind(url)
    if kind in ("single", "unix"):
        return aioredis.Redis.from_url(url, **options)
    target = parse_multi_host(url)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes), sentinel_kwargs={**auth, **_timeouts(options)},
            **auth, db=target.db, **options,
        )
        if target.tls:
            return sentinel.master_for(target.master,
                                       connection_class=SentinelManagedSSLConnection)
        return sentinel.master_for(target.master)
    options.pop("health_check_interval", None)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        ssl=target.tls, **auth, **options,
    )


def _timeouts(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
