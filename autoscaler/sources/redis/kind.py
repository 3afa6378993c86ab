"""The base of the Redis kinds (redis-list, -stream, -zset, rq, arq, celery): one sampler per
URL, built from the settings alone."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.sources.redis.sampler import RedisSampler
from autoscaler.sources.redis.settings import RedisSettings


class RedisKind:
    """Base of every Redis kind: shared sampler key and sampler factory."""

    kind: ClassVar[str]
    Settings: ClassVar[type[RedisSettings]]

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable:
        """Pools on the same URL share one sampler (one connection, one round trip per tick)."""
        if not isinstance(settings, RedisSettings):
            raise TypeError(f"{cls.kind}: expected RedisSettings, got {type(settings).__name__}")
        return ("redis", settings.url)

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> RedisSampler:
        """One sampler for all pools of one URL; pools of any Redis kind may be mixed."""
        return RedisSampler(pools, clock, timeout_s)
