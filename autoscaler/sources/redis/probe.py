"""The Lua probe that measures many Redis queues in one command, and the decoding of its reply.

Why a script rather than a plain pipeline of LLEN/LINDEX/...: a stream's oldest undelivered
entry is found with an ``XRANGE`` that starts after the group's last-delivered-id, which is only
known once ``XINFO GROUPS`` has answered; inside a script this costs no extra round trip. The
script also packs its answer into ONE bulk string per call (a line per pool, tab-separated
fields), because parsing thousands of small RESP elements in pure Python cost more than the
whole server-side work. It only reads, except ``<key>:bighead`` for a list head over
``BIG_HEAD`` (see ``HEAD_PREFIX``); each call covers at most ``CHUNK`` pools so that it holds
the server for a bounded time (a few microseconds per pool).

Calling convention: ``EVALSHA sha 0 <cap> <n> <prefix> <kind key group>*n <enq done>*n`` (on
Redis Cluster ``EVALSHA sha 1 <key> ...``, one call per hash slot: see ``call_args``) where
each pool is ``kind``, ``key``, ``group`` (a stream's group, rq's prefix, Celery's unacked hash;
else empty) and its two counter names; the script derives
``<key>:processing:<c>`` for each ``<c>`` in ``<key>:consumers`` (list: a worker's own
processing list, see ``redis_reclaim``; one LLEN per registered worker, fine for tens of them),
``<key>:inflight`` (zset), ``<key>:enqueued`` and ``<key>:completed`` itself. Only a
routing key is declared, so on Redis Cluster every key a call reads must share that key's slot:
the settings require ``{hash tag}`` keys there and the sampler groups pools by slot.
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

Kind = Literal["list", "zset", "stream", "rq", "arq", "celery", "celery-all", "celery-none"]

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
local count = tonumber(ARGV[2])
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

-- The head payload's TOP-LEVEL "enqueued_at" number (or, with `nested`, the one inside its
-- top-level "headers" object: a Celery message), read from its first `prefix` bytes
-- only, so a 100 MB request costs LINDEX's copy (~0.5 s), not also a scan of 100 MB.
-- Escapes are dropped, then every string except the keys looked for is emptied (so braces in
-- prompts do not count) and the keys are marked \1 (enqueued_at) and \2 (headers); the first
-- marked key at the wanted depth followed by ':' is the one. A value that is not a number,
-- or a key past the prefix, gives '' (unknown). No cjson.decode: a truncated prefix is not
-- valid JSON, and decoding a whole prompt per tick would make sampling cost grow with it.
local find, sub, match, gsub = string.find, string.sub, string.match, string.gsub

-- The common case at a fraction of the scan's cost: the first "enqueued_at" is a top-level key
-- when nothing between the opening brace and it can nest or hide it (no brace, bracket or
-- backslash, an even number of quotes) and it follows '{' or ','. nil: ask the full scan.
local function enqueued_at_fast(item)
  local _, open = find(item, '^%s*{')
  if not open then return '' end  -- not a JSON object: unknown either way
  local at = find(item, '"enqueued_at"', open + 1, true)
  if not at or at + 13 > prefix then return nil end
  local between = sub(item, open + 1, at - 1)
  if find(between, '[{}%[%]\\]') or not (find(between, '^%s*$') or find(between, ',%s*$')) then
    return nil
  end
  local _, quotes = gsub(between, '"', '')
  if quotes % 2 == 1 then return nil end
  local v = match(item, '^%s*:%s*(%-?[%d.]+[eE]?[-+]?%d*)', at + 13)
  if v and tonumber(v) then return v end
  return ''
end

local function enqueued_at(item, nested)
  if not nested then
    local fast = enqueued_at_fast(item)
    if fast then return fast end
  end
  local s = item
  if #s > prefix then s = sub(s, 1, prefix) end
  if not s:match('^%s*{') then return '' end
  s = s:gsub('\\.', '')
  s = s:gsub('"[^"]*"', function(m)
    if m == '"enqueued_at"' then return '\1' end
    if m == '"headers"' then return '\2' end
    return '""'
  end)
  local depth, want, inside, opening = 0, nested and 2 or 1, not nested, false
  for pos, c in s:gmatch('()([{}%[%]\1\2])') do
    if c == '{' or c == '[' then
      depth = depth + 1
      if opening and depth == 2 then inside = true end
      opening = false
    elseif c == '}' or c == ']' then
      depth = depth - 1
      if depth <= 0 then return '' end
      if nested and depth < 2 then inside = false end
    elseif c == '\2' then
      opening = nested and depth == 1 and s:find('^%s*:%s*{', pos + 1) ~= nil
    elseif inside and depth == want and s:find('^%s*:', pos + 1) then
      local v = s:match('^%s*:%s*(%-?[%d.]+[eE]?[-+]?%d*)', pos + 1)
      if v and tonumber(v) then return v end
      return ''
    end
  end
  return ''
end

-- Redis server time, read once per call and only by kinds that need it (rq, arq).
local clock
local function now()
  if not clock then
    local t = call('TIME')
    clock = tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  return clock
end

-- An rq timestamp ('2024-05-01T12:00:00.123456Z', UTC) as unix seconds; '' if not one.
local function iso_seconds(v)
  if not v then return '' end
  local y, mo, d, h, mi, sec = v:match('^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):([%d.]+)Z?$')
  if not y then return '' end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end  -- days from civil (H. Hinnant), years starting in March
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
               - 719468
  return format('%.6f', days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec))
end

-- A head over @BIG_HEAD@ bytes costs its copy and prefix scan (LINDEX cannot read part of
-- an element): its field is remembered in <key>:bighead as "<removed>|<field>" (with a TTL),
-- where <removed> = <key>:enqueued - LLEN counts the items ever taken from the list; while
-- it is unchanged the head is the same item and is not copied again. The mark is read only
-- for a non-empty list with a counter: one GET, no copy.
local function head_of(key, n, enq)
  if enq == '' then return enqueued_at(call('LINDEX', key, -1), false) end
  local removed = format('%d', tonumber(enq) - n)
  local mark = call('GET', key .. ':bighead')
  if mark and mark:sub(1, #removed + 1) == removed .. '|' then return mark:sub(#removed + 2) end
  local item = call('LINDEX', key, -1)
  local head = enqueued_at(item, false)
  if #item > @BIG_HEAD@ then
    pcall_redis('SET', key .. ':bighead', removed .. '|' .. head, 'PX', @BIG_HEAD_TTL_MS@)
  end
  return head
end

local function list(key, enq, done)
  local n = pcall_redis('LLEN', key)
  if type(n) == 'table' then return fail(key, n.err) end
  local head = ''
  if n > 0 then head = head_of(key, n, enq) end
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
    -- Fields by name, read in place (no table per group: this runs for every stream pool).
    local name
    for j = 1, #g, 2 do
      if g[j] == 'name' then name = g[j + 1] break end
    end
    if name == group then
      found = true
      for j = 1, #g, 2 do
        local field = g[j]
        if field == 'last-delivered-id' then last = g[j + 1]
        elseif field == 'lag' then lag = g[j + 1]
        elseif field == 'pending' then pending = g[j + 1]
        elseif field == 'entries-read' then read = g[j + 1] end
      end
      break
    end
  end
  local first
  if not found then
    lag = call('XLEN', key)
    first = call('XRANGE', key, '-', '+', 'COUNT', 1)
  else
    if lag == 0 then
      first = {}  -- everything delivered: no head to look up
    else
      first = call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
    end
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

-- rq: `key` is the queue's list `<prefix>:queue:<name>`; RPUSH-ed job ids, popped from the
-- left. The head job's hash has `enqueued_at`; running jobs are in the started registry
-- `<prefix>:wip:<name>` scored by when their worker's lease ends (an expired score: the worker
-- died, rq will fail or requeue it); completions are the finished + failed registries' sizes,
-- and arrivals = completions + waiting + running (every job is in exactly one of them).
local function rq(key, rq_prefix, enq, done)
  local n = pcall_redis('LLEN', key)
  if type(n) == 'table' then return fail(key, n.err) end
  local name = key:sub(#rq_prefix + 8)
  local head = ''
  if n > 0 then
    local id = call('LINDEX', key, 0)
    local at = pcall_redis('HGET', rq_prefix .. ':job:' .. id, 'enqueued_at')
    if type(at) == 'string' then head = iso_seconds(at) end
  end
  local busy = pcall_redis('ZCOUNT', rq_prefix .. ':wip:' .. name, '(' .. format('%.6f', now()),
                           '+inf')
  local fin = pcall_redis('ZCARD', rq_prefix .. ':finished:' .. name)
  local failed = pcall_redis('ZCARD', rq_prefix .. ':failed:' .. name)
  if type(busy) ~= 'number' then busy = '' end
  if type(fin) == 'number' and type(failed) == 'number' then
    done = fin + failed
    if busy ~= '' then enq = done + n + busy end
  end
  return 'ok\t' .. n .. '\t' .. head .. '\t' .. busy .. '\t' .. enq .. '\t' .. done
end

-- arq: a sorted set scored by when each job may run (unix ms). Due jobs (score <= now) stay in
-- it while they run, marked by `arq:in-progress:<id>`; workers start the oldest due first, so
-- the running ones are found by walking the due jobs from the oldest until `ARQ_RUN` waiting
-- ones in a row (or `cap` in all) have been seen. Deferred jobs (score in the future) wait
-- for nobody: not counted.
local ARQ_RUN, ARQ_BATCH = 64, 128
local function arq(key, enq, done)
  local t = format('%d', math.floor(now() * 1000))
  local due = pcall_redis('ZCOUNT', key, '-inf', t)
  if type(due) == 'table' then return fail(key, due.err) end
  local busy, head, run, offset = 0, '', 0, 0
  while offset < due and offset < cap and run < ARQ_RUN do
    local batch = call('ZRANGEBYSCORE', key, '-inf', t, 'WITHSCORES', 'LIMIT', offset, ARQ_BATCH)
    if #batch == 0 then break end
    for j = 1, #batch, 2 do
      if call('EXISTS', 'arq:in-progress:' .. batch[j]) == 1 then
        busy = busy + 1
      else
        run = run + 1
        if head == '' then head = format('%.3f', tonumber(batch[j + 1]) / 1000) end
        if run >= ARQ_RUN then break end
      end
    end
    offset = offset + ARQ_BATCH
  end
  return 'ok\t' .. (due - busy) .. '\t' .. head .. '\t' .. busy .. '\t' .. enq .. '\t' .. done
end

-- celery (kombu's Redis transport): LPUSH-ed JSON messages, popped from the right, in the
-- list `key` and its priority sub-queues `key .. SEP .. p` (p = 1..9: every priority step a
-- transport may be configured with). Delivered, unacknowledged messages sit in the hash
-- `unacked` as `[message, exchange, routing_key]`. mode 'routing': counted for this queue by
-- routing key (each unacked message is copied into Lua once per tick), unknown above
-- CELERY_UNACKED_CAP of them; 'all': HLEN, every queue's on this database; 'none': unknown.
local CELERY_SEP, CELERY_UNACKED_CAP = '\6\22', 1000
local function celery(key, unacked, enq, done, mode)
  local n, head = 0, nil
  for p = 0, 9 do
    local q = key
    if p > 0 then q = key .. CELERY_SEP .. p end
    local m = pcall_redis('LLEN', q)
    if type(m) == 'table' then return fail(q, m.err) end
    if m > 0 then
      n = n + m
      local at = tonumber(enqueued_at(call('LINDEX', q, -1), true))
      if at and (head == nil or at < head) then head = at end
    end
  end
  local busy = ''
  local size = mode ~= 'none' and pcall_redis('HLEN', unacked)
  if mode == 'all' and type(size) == 'number' then
    busy = size
  elseif mode == 'routing' and type(size) == 'number' and size <= CELERY_UNACKED_CAP then
    busy = 0
    local tail = ', "' .. key .. '"]'
    if size > 0 then
      for _, v in ipairs(call('HVALS', unacked)) do
        if v:sub(-#tail) == tail then busy = busy + 1 end
      end
    end
  end
  if head then head = format('%.6f', head) else head = '' end
  return 'ok\t' .. n .. '\t' .. head .. '\t' .. busy .. '\t' .. enq .. '\t' .. done
end

-- ARGV[4 ..]: kind, key, group of each pool, then the names of their two counters.
local counters = 3 + 3 * count
local counts = call('MGET', unpack(ARGV, counters + 1, counters + 2 * count))
for i = 1, count do
  local at = 3 * i + 1
  local kind, key, group = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local enq, done = int(counts[2 * i - 1]), int(counts[2 * i])
  if kind == 'list' then
    out[i] = list(key, enq, done)
  elseif kind == 'zset' then
    out[i] = zset(key, enq, done)
  elseif kind == 'stream' then
    out[i] = stream(key, group, enq, done)
  elseif kind == 'rq' then
    out[i] = rq(key, group, enq, done)
  elseif kind == 'arq' then
    out[i] = arq(key, enq, done)
  elseif kind == 'celery' then
    out[i] = celery(key, group, enq, done, 'routing')
  elseif kind == 'celery-all' then
    out[i] = celery(key, group, enq, done, 'all')
  elseif kind == 'celery-none' then
    out[i] = celery(key, group, enq, done, 'none')
  else
    out[i] = fail(key, 'unknown probe kind ' .. kind)
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


def call_args(probes: list[Probe], route_key: str | None = None) -> list[str | int]:
    """``numkeys``, KEYS and ARGV of one EVALSHA for ``probes``: built once, sent every tick.

    ``route_key`` (Redis Cluster) is declared as the one KEYS entry so that the call goes to
    the node serving its slot; every probe of the call must be in that slot.

    Every name is its own argument (kind, key, group per pool, then each pool's
    ``<key>:enqueued`` and ``<key>:completed``), so the script parses nothing and hands the
    counter names straight to MGET. The sampler encodes the call once and sends the same
    bytes every tick, so thousands of small arguments cost no per-tick encoding.
    """
    keys: list[str | int] = [0] if route_key is None else [1, route_key]
    names: list[str | int] = []
    for p in probes:
        names += (p.kind, p.key, p.group)
    for p in probes:
        names += (f"{p.key}:enqueued", f"{p.key}:completed")
    return [*keys, LAG_SCAN_LIMIT, len(probes), HEAD_PREFIX, *names]


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
