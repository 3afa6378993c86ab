"""Worker liveness and reclaim: a request taken by a worker that died is served again, once.

Why: a worker killed mid-request (SIGKILL, OOM, node loss) never settles what it took. Without
reclaim that request is never served, and the source keeps counting it as in flight, so a pool
with ``min: 0`` never scales to zero (phantom demand). Every worker therefore proves it is alive,
and every worker reaps the requests of workers that are not.

Keys (``<key>`` is the queue key, ``<c>`` a consumer name, never reused: HOSTNAME-PID):

* ``<key>:consumers`` - set of the consumers that follow this protocol.
* ``<key>:alive:<c>`` - ``SET PX <ttl>``; renewed every ttl/3 while the worker runs.
* list: ``<key>:processing:<c>`` - the consumer's own reliable-pop list (BLMOVE target).
* zset: ``<key>:inflight`` (``<c> -> member``, as before) and ``<key>:inflight:score``
  (``<c> -> score``) so a reclaimed member goes back with its original enqueue time.
* stream: the group's pending entries list, per consumer, as Redis keeps it.

Reaping (``RECLAIM``, one Lua script, so each request is moved exactly once even when several
workers reap at once): for each consumer of ``<key>:consumers`` other than the caller whose
alive key is gone, list: move its processing list back to the end of ``<key>`` workers pop from
(the request is the oldest, so it is served next); zset: ``ZADD`` the member back with its
score; stream: ``XCLAIM`` its pending entries (100 per run) to the caller, which serves them
next, then ``XGROUP DELCONSUMER``. Then ``SREM`` the consumer. Reclaim goes by liveness, not by
how long an entry has been pending, so a long request of a live worker is never taken from it.

Delivery is at least once: a live worker that misses its renewals for a whole TTL (a stalled
process, a partition) is treated as dead; its request is served again and may be counted twice
in ``<key>:completed``. Consumers outside ``<key>:consumers`` (workers of an older version) are
never reaped. Keys are not declared to the script: standalone Redis or Sentinel only (the
probe, which declares a routing key per hash slot, also samples Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

ReclaimKind = Literal["list", "zset", "stream"]

CONSUMERS_SUFFIX = ":consumers"
ALIVE_SUFFIX = ":alive:"
SCORE_SUFFIX = ":inflight:score"
CLAIM_BATCH = 100
"""Stream entries claimed from one dead consumer per run: bounds how long a run holds Redis."""

RECLAIM = r"""
local kind, key, me, group, batch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local call = redis.call
local consumers = key .. ':consumers'
local moved, reaped = 0, {}
for _, c in ipairs(call('SMEMBERS', consumers)) do
  if c ~= me and call('EXISTS', key .. ':alive:' .. c) == 0 then
    local done = true
    if kind == 'list' then
      -- LEFT to RIGHT: the oldest entry is moved last and ends where workers pop first.
      local proc = key .. ':processing:' .. c
      while call('LMOVE', proc, key, 'LEFT', 'RIGHT') do moved = moved + 1 end
    elseif kind == 'zset' then
      local member = call('HGET', key .. ':inflight', c)
      if member then
        local score = call('HGET', key .. ':inflight:score', c)
                      or call('ZRANGE', key, 0, 0, 'WITHSCORES')[2] or '0'
        call('ZADD', key, score, member)
        moved = moved + 1
      end
      call('HDEL', key .. ':inflight', c)
      call('HDEL', key .. ':inflight:score', c)
    else
      local pending = redis.pcall('XPENDING', key, group, '-', '+', batch, c)
      if type(pending) == 'table' and not pending.err then
        if #pending > 0 then
          local ids = {}
          for i, p in ipairs(pending) do ids[i] = p[1] end
          call('XCLAIM', key, group, me, 0, unpack(ids))
          moved = moved + #ids
        end
        if #pending == batch then done = false
        else call('XGROUP', 'DELCONSUMER', key, group, c) end
      end  -- no group (or no stream): nothing pending to move
    end
    if done then
      call('SREM', consumers, c)
      reaped[#reaped + 1] = c
    end
  end
end
return {moved, reaped}
"""

LEAVE = r"""
local kind, key, me, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('DEL', key .. ':alive:' .. me)
if kind == 'stream' then
  local pending = redis.pcall('XPENDING', key, group, '-', '+', 1, me)
  if type(pending) == 'table' and not pending.err then
    if #pending > 0 then return 0 end  -- keep the name: a reaper will claim what is left
    redis.call('XGROUP', 'DELCONSUMER', key, group, me)
  end
end
redis.call('SREM', key .. ':consumers', me)
return 1
"""


class Membership:
    """One worker's registration, heartbeat and reaping for one queue.

    ``client`` is a ``redis.asyncio.Redis``; every method is one round trip. Errors propagate:
    the caller decides whether to retry (a missed renewal is retried at the next one).
    """

    def __init__(
        self, client: Any, kind: ReclaimKind, key: str, consumer: str, ttl_s: float,
        group: str = "",
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"heartbeat ttl must be > 0 s, got {ttl_s}")
        self.client, self.kind, self.key, self.consumer = client, kind, key, consumer
        self.group, self.ttl_s = group, ttl_s
        self.alive_key = key + ALIVE_SUFFIX + consumer
        self._args = (kind, key, consumer, group)
        self._reclaim = client.register_script(RECLAIM)
        self._leave = client.register_script(LEAVE)

    async def renew(self) -> None:
        """Set the alive key and (re-)join the set, in one MULTI: never in the set without a
        live key. Also the registration at start-up, before anything is taken."""
        await renew_together([self])

    def _queue_renewal(self, pipe: Any) -> None:
        pipe.set(self.alive_key, b"1", px=max(1, int(self.ttl_s * 1000)))
        pipe.sadd(self.key + CONSUMERS_SUFFIX, self.consumer)

    async def reap(self) -> tuple[int, list[str]]:
        """Reclaim the requests of dead consumers: ``(requests moved, consumers reaped)``."""
        moved, reaped = await self._reclaim(
            keys=[], args=[*self._args, CLAIM_BATCH], client=self.client
        )
        return int(moved), [c.decode(errors="replace") for c in reaped]

    async def leave(self) -> None:
        """A clean exit: drop the alive key and the registration (a stream consumer with
        pending entries stays registered, so that a reaper claims them)."""
        await self._leave(keys=[], args=list(self._args), client=self.client)


async def renew_together(memberships: Sequence[Membership]) -> None:
    """``renew`` for several consumers sharing one client (a worker's slots) in one MULTI: one
    round trip and one connection however many slots, and the slots live or die together."""
    if not memberships:
        return
    client = memberships[0].client
    if any(m.client is not client for m in memberships):
        raise ValueError("memberships renewed together must share one client")
    async with client.pipeline(transaction=True) as pipe:
        for membership in memberships:
            membership._queue_renewal(pipe)
        await pipe.execute()
