"""The Lua probe that measures many Redis queues in one command, and the decoding of its reply.

Why a script rather than a plain pipeline of LLEN/LINDEX/...: a stream's oldest undelivered
entry is found with an ``XRANGE`` that starts after the group's last-delivered-id, which is only
known once ``XINFO GROUPS`` has answered; inside a script this costs no extra round trip. The
script also packs its answer into ONE bulk string per call (a line per pool, tab-separated
fields), because parsing thousands of small RESP elements in pure Python cost more than the
whole server-side work. It only reads, except ``<key>:bighead`` for a list head over
``BIG_HEAD`` (see ``HEAD_PREFIX``); each call covers at most ``CHUNK`` pools so that it holds
the server for a bounded time (a few microseconds per pool).

Calling convention: ``EVALSHA sha 0 <cap> <spec> <prefix>`` where ``spec`` lists the pools as lines
``kind``, ``key``, ``group`` (empty unless a stream); the script derives
``<key>:processing:<c>`` for each ``<c>`` in ``<key>:consumers`` (list: a worker's own
processing list, see ``redis_reclaim``; one LLEN per registered worker, fine for tens of them),
``<key>:inflight`` (zset), ``<key>:enqueued`` and ``<key>:completed`` itself. Keys are
not declared in KEYS, so the probe is for a standalone Redis server, not Redis Cluster.
Each pool's line is ``ok depth head in_flight arrivals completed`` (empty field = unknown) or
``E message`` for a key that could not be read (wrong type). ``head`` is the oldest item's
enqueue time (list: the TOP-LEVEL ``"enqueued_at": <number>`` member of a JSON object payload,
found by a scan of its first ``HEAD_PREFIX`` bytes rather than a JSON decode, so that large
prompts cost one copy and no parse; zset: its score) or the first undelivered stream ID. The
script does not judge the value: ``autoscaler.core.plausibility`` does, in the sampler.
Counter values that are not integers are reported as unknown, so no field holds a tab or
newline. A stream's arrival counter is the group's ``entries-read + lag`` (which equals the
stream's ``entries-added``, without the cost of ``XINFO STREAM``); when that is unknown, the
``<key>:enqueued`` counter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, NamedTuple

Kind = Literal["list", "zset", "stream"]

CHUNK = 250
"""Pools per EVALSHA: bounds how long one script holds the Redis event loop."""

LAG_SCAN_LIMIT = 10_000
"""Most undelivered stream entries counted by XRANGE when Redis cannot report the lag."""

HEAD_PREFIX = 1_048_576
"""Bytes of a list's head payload the script scans for its top-level ``enqueued_at``: a
producer writes that key early; a huge prompt before it makes the wait unknown. What this does
NOT bound: Redis still copies the whole head element into Lua (``LINDEX``; Redis has no way to
read part of a list element, nor to tell its size without the copy), measured at ~170 ms for
10 MB and ~540 ms for 100 MB per sample on a loaded 2-core machine, against 1.15 s for 100 MB
with the whole-payload scan before. So a head over ``BIG_HEAD`` is copied ONCE: the script
remembers its field in ``<key>:bighead`` (``<removed>|<field>``, 30 s TTL; ``removed`` is
``<key>:enqueued`` minus the length, the count of items ever taken from the list) and reads the
field from there while that count is unchanged, i.e. while the same item is at the head: every
later sample costs microseconds, for this daemon, its standbys and a restarted one alike.
Needs the ``:enqueued`` counter (without it every sample copies the head, as before). Not
covered: a first copy slower than ``sample_timeout`` (above ~150 MB at 500 ms here) fails that
round, though Redis still runs it and writes the mark, so the next round is fast; a producer
that pushes at the head end (``RPUSH``) while counting leaves the count unchanged: the old
head's time is used for up to the 30 s TTL."""

BIG_HEAD = 65_536
"""Bytes above which a list head is copied once and remembered (``HEAD_PREFIX``): a 1 MiB
head costs ~45 ms of copy and scan per sample, a 64 KiB one ~3 ms."""

BIG_HEAD_TTL_MS = 30_000
"""How long a remembered head field is trusted without a new copy."""

SCRIPT = r"""
local call, pcall_redis, format = redis.call, redis.pcall, string.format
local cap = tonumber(ARGV[1])
local prefix = tonumber(ARGV[3])
local out = {}

local function int(v)
  if type(v) == 'number' then return format('%d', v) end
  if v and v:match('^%-?%d+$') then return v end
  return ''
end

local function fail(key, err)
  return 'E\t' .. (key .. ': ' .. tostring(err)):gsub('[\r\n\t]', ' ')
end

-- The head payload's TOP-LEVEL "enqueued_at" number, read from its first `prefix` bytes
-- only, so a 100 MB request costs LINDEX's copy (~0.5 s), not also a scan of 100 MB.
-- Escapes are dropped, then every string except the key itself is emptied (so braces in
-- prompts do not count) and the key is marked \1; the first marked key at depth 1 followed
-- by ':' is the one. A value that is not a number, or a key past the prefix, gives ''
-- (unknown). No cjson.decode: a truncated prefix is not valid JSON, and decoding a whole
-- prompt per tick would make sampling cost grow with it.
local function enqueued_at(item)
  local s = item:sub(1, prefix)
  if not s:match('^%s*{') then return '' end
  s = s:gsub('\\.', '')
  s = s:gsub('"[^"]*"', function(m)
    if m == '"enqueued_at"' then return '\1' end
    return '""'
  end)
  local depth = 0
  for pos, c in s:gmatch('()([{}%[%]\1])') do
    if c == '{' or c == '[' then
      depth = depth + 1
    elseif c == '}' or c == ']' then
      depth = depth - 1
      if depth <= 0 then return '' end
    elseif depth == 1 and s:find('^%s*:', pos + 1) then
      local v = s:match('^%s*:%s*(%-?[%d.]+[eE]?[-+]?%d*)', pos + 1)
      if v and tonumber(v) then return v end
      return ''
    end
  end
  return ''
end

-- A head over @BIG_HEAD@ bytes costs its copy and prefix scan (LINDEX cannot read part of
-- an element): its field is remembered in <key>:bighead as "<removed>|<field>" (with a TTL),
-- where <removed> = <key>:enqueued - LLEN counts the items ever taken from the list; while
-- it is unchanged the head is the same item and is not copied again.
local function head_of(key, n, enq, mark)
  if enq == '' then return enqueued_at(call('LINDEX', key, -1)) end
  local removed = format('%d', tonumber(enq) - n)
  if mark and mark:sub(1, #removed + 1) == removed .. '|' then return mark:sub(#removed + 2) end
  local item = call('LINDEX', key, -1)
  local head = enqueued_at(item)
  if #item > @BIG_HEAD@ then
    pcall_redis('SET', key .. ':bighead', removed .. '|' .. head, 'PX', @BIG_HEAD_TTL_MS@)
  end
  return head
end

local function list(key, enq, done, mark)
  local n = pcall_redis('LLEN', key)
  if type(n) == 'table' then return fail(key, n.err) end
  local head = ''
  if n > 0 then head = head_of(key, n, enq, mark) end
  -- In flight: each worker's own processing list (reclaim needs to know whose request it is).
  local busy = 0
  local members = pcall_redis('SMEMBERS', key .. ':consumers')
  if members.err == nil then
    local prefix = key .. ':processing:'
    for j = 1, #members do
      local m = pcall_redis('LLEN', prefix .. members[j])
      if type(m) == 'number' then busy = busy + m end
    end
  end
  return 'ok\t' .. n .. '\t' .. head .. '\t' .. busy .. '\t' .. enq .. '\t' .. done
end

local function zset(key, enq, done)
  local n = pcall_redis('ZCARD', key)
  if type(n) == 'table' then return fail(key, n.err) end
  local head = ''
  if n > 0 then head = call('ZRANGE', key, 0, 0, 'WITHSCORES')[2] end
  return 'ok\t' .. n .. '\t' .. head .. '\t' .. int(pcall_redis('HLEN', key .. ':inflight'))
         .. '\t' .. enq .. '\t' .. done
end

local function stream(key, group, enq, done)
  local groups = pcall_redis('XINFO', 'GROUPS', key)
  if groups.err then
    if groups.err:find('WRONGTYPE') then return fail(key, groups.err) end
    groups = {}  -- no such key: an empty queue
  end
  local found, last, lag, pending, read = false, '', false, 0, false
  for _, g in ipairs(groups) do
    local f = {}
    for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
    if f['name'] == group then
      found, last, lag, pending, read = true, f['last-delivered-id'], f['lag'], f['pending'],
                                        f['entries-read']
    end
  end
  local first
  if not found then
    lag = call('XLEN', key)
    first = call('XRANGE', key, '-', '+', 'COUNT', 1)
  else
    first = call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
    if lag and read then
      enq = int(lag + read)  -- entries-added, without the cost of XINFO STREAM
    elseif not lag then
      lag = #call('XRANGE', key, '(' .. last, '+', 'COUNT', cap)
    end
  end
  local head = ''
  if first[1] then head = first[1][1] end
  return 'ok\t' .. lag .. '\t' .. head .. '\t' .. pending .. '\t' .. enq .. '\t' .. done
end

local spec = {}
for line in (ARGV[2] .. '\n'):gmatch('([^\n]*)\n') do spec[#spec + 1] = line end
local names = {}
local at = {}  -- each pool's first name in the MGET (lists have a third: :bighead)
for i = 2, #spec, 3 do
  at[#at + 1] = #names + 1
  names[#names + 1] = spec[i] .. ':enqueued'
  names[#names + 1] = spec[i] .. ':completed'
  if spec[i - 1] == 'list' then names[#names + 1] = spec[i] .. ':bighead' end
end
local counts = call('MGET', unpack(names))
for i = 1, #spec / 3 do
  local kind, key, j = spec[3 * i - 2], spec[3 * i - 1], at[i]
  local enq, done = int(counts[j]), int(counts[j + 1])
  if kind == 'list' then
    out[i] = list(key, enq, done, counts[j + 2])
  elseif kind == 'zset' then
    out[i] = zset(key, enq, done)
  else
    out[i] = stream(key, spec[3 * i], enq, done)
  end
end
return table.concat(out, '\n')
""".replace("@BIG_HEAD@", str(BIG_HEAD)).replace("@BIG_HEAD_TTL_MS@", str(BIG_HEAD_TTL_MS))

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Probe:
    """One pool's part of the call."""

    kind: Kind
    key: str
    group: str = ""


class Measured(NamedTuple):
    """One pool's decoded reply; ``error`` set means the pool could not be measured.

    A NamedTuple rather than a frozen dataclass: it is built for every pool on every tick and
    costs a fraction of a frozen dataclass's ``__init__``.
    """

    depth: int = 0
    head_time: float | None = None
    in_flight: int | None = None
    arrivals: int | None = None
    completed: int | None = None
    error: str | None = None


def call_args(probes: list[Probe]) -> list[str | int]:
    """``numkeys`` and ARGV of one EVALSHA for ``probes``: built once, sent every tick.

    The pools travel as one newline-separated argument (kind, key, group per pool) because
    redis-py spends more time encoding thousands of small arguments than the server spends
    on the whole script. Keys and groups cannot hold newlines (the settings forbid them).
    """
    spec = "\n".join(f"{p.kind}\n{p.key}\n{p.group}" for p in probes)
    return [0, LAG_SCAN_LIMIT, spec, HEAD_PREFIX]


def split_reply(reply: object, count: int) -> list[list[str]] | None:
    """One chunk's reply as ``count`` rows of fields; ``None`` if it is not what we sent for."""
    if isinstance(reply, bytes):
        reply = reply.decode(errors="replace")
    if not isinstance(reply, str):
        return None
    rows = [line.split("\t") for line in reply.split("\n")] if count else []
    return rows if len(rows) == count else None


def head_seconds(probe: Probe, head: str) -> float:
    """The oldest item's enqueue time in unix seconds from the script's ``head`` field (a
    stream ID's milliseconds, or a number, possibly ``inf``: the sampler judges plausibility);
    ``ValueError`` when it is not a number at all."""
    if probe.kind == "stream":
        return int(head.partition("-")[0]) / 1000.0
    return float(head)


def decode(probe: Probe, row: list[str]) -> Measured:
    """Turn one pool's row into numbers; a malformed row becomes an error, not a crash.

    This runs for every pool on every tick, so it trusts the script's formats (integer fields
    are ``-?[0-9]+`` or empty) and lets one ``ValueError`` catch anything else.
    """
    if len(row) != 6 or row[0] != "ok":
        if row[0] == "E" and len(row) == 2:
            return Measured(error=row[1])
        return Measured(error=f"unexpected probe reply {row!r:.80}")
    _, depth, head, in_flight, arrivals, completed = row
    try:
        head_time: float | None = None  # plausibility is the sampler's call
        if head:
            head_time = head_seconds(probe, head)
        return Measured(
            max(int(depth), 0),
            head_time,
            int(in_flight) if in_flight else None,
            int(arrivals) if arrivals else None,
            int(completed) if completed else None,
        )
    except ValueError:
        return Measured(error=f"unexpected probe reply {row!r:.80}")
