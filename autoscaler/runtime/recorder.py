"""``autoscaler run --record DIR``: what the daemon observed, per pool, as traces to replay.

Record in production, tune offline (``autoscaler simulate`` / ``tune``), deploy. Per pool
``DIR/<pool>/`` gets, per segment (a new one every ``rotate_s``, named by its UTC start):

* ``rate-<start>.csv`` - ``t_s,rate_rps``: the arrival rate series ``simulate --trace`` reads
  (piecewise constant; seeded Poisson arrivals; service times from the pool's
  ``service_model``). The row at ``t_s`` holds the rate measured over the tick that STARTED
  there (the source's counter delta up to the next tick), so each rate holds exactly where
  it was measured. When the source has no arrival counter but counts completions, the rate
  is estimated by conservation: completions + the change of (waiting + in flight) per second.
  Ticks with neither (or stale ones) write no row: the previous rate holds over them.
* ``observations-<start>.csv`` - every tick: wall time, depth, in flight, oldest wait, both
  rates, the rate source (``counter``, ``estimated`` or empty), freshness and the decision
  (desired instances). For people and notebooks; ``simulate`` does not read it.

``t_s`` counts from the segment's first tick, so every segment replays on its own.

Never blocks the tick: ``on_tick`` only appends to a bounded queue; a background thread
formats and writes. A full queue (a stalled disk) drops ticks, counts them in ``dropped`` and
logs once per burst. Files are written in whole lines, flushed after every batch (a reader or
a crash sees complete rows) and fsync-ed when a segment closes; ``close()`` drains what is
queued first.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from autoscaler.core.model import Observation
from autoscaler.runtime.loop import PoolTick

log = structlog.get_logger(__name__)

RATE_HEADER = "t_s,rate_rps\n"
OBS_HEADER = ("t_s,wall,depth,in_flight,oldest_wait_s,arrival_rate,completion_rate,"
              "rate_source,fresh,desired\n")
DAY_S = 86_400.0


@dataclass(slots=True)
class _Row:
    pool: str
    mono: float
    wall: float
    obs: Observation
    desired: int | None


@dataclass(slots=True)
class _Segment:
    start_mono: float
    rate: IO[str]
    observations: IO[str]


@dataclass(slots=True)
class _PoolState:
    segment: _Segment | None = None
    pending_rate_at: float | None = None
    """Where the next measured rate starts: the previous fresh tick's time."""
    previous: Observation | None = None


class TraceRecorder:
    """Per-pool trace files under ``directory`` (see the module docstring)."""

    def __init__(self, directory: str | Path, *, rotate_s: float = DAY_S,
                 max_queued_ticks: int = 10_000) -> None:
        if rotate_s <= 0 or max_queued_ticks < 1:
            raise ValueError("rotate_s must be > 0 and max_queued_ticks >= 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_s = rotate_s
        self.dropped = 0
        self._queue: queue.Queue[list[_Row] | None] = queue.Queue(maxsize=max_queued_ticks)
        self._pools: dict[str, _PoolState] = {}
        self._dropping = False
        self._thread = threading.Thread(target=self._write_loop, name="trace-recorder",
                                        daemon=True)
        self._thread.start()

    def on_tick(self, ticks: Sequence[PoolTick]) -> None:
        """Called by the control loop after every tick; O(pools), never waits."""
        wall = time.time()
        rows = [
            _Row(t.pool, t.observation.time, wall, t.observation,
                 t.decision.desired if t.decision is not None else None)
            for t in ticks if t.observation is not None
        ]
        try:
            self._queue.put_nowait(rows)
            self._dropping = False
        except queue.Full:
            self.dropped += 1
            if not self._dropping:
                log.warning("trace_record_dropped", directory=str(self.directory),
                            reason="the writer is behind (slow disk?)")
                self._dropping = True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close every segment (flushed and fsync-ed)."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("trace_record_close_timeout", directory=str(self.directory))
            return
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ the writer thread

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    break
                touched = set()
                for row in batch:
                    touched.add(row.pool)
                    self._write(row)
                while True:  # drain what else is queued before flushing once
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._flush(touched)
                        return
                    for row in more:
                        touched.add(row.pool)
                        self._write(row)
                self._flush(touched)
        except OSError as exc:  # a full or read-only disk: stop recording, keep the daemon
            log.error("trace_record_failed", directory=str(self.directory),
                      error=exc.strerror or str(exc))
        finally:
            for state in self._pools.values():
                self._close_segment(state)

    def _write(self, row: _Row) -> None:
        state = self._pools.setdefault(row.pool, _PoolState())
        segment = state.segment
        if segment is None or row.mono - segment.start_mono >= self.rotate_s:
            self._close_segment(state)
            segment = state.segment = self._open_segment(row)
            state.pending_rate_at = None
        obs, t_s = row.obs, row.mono - segment.start_mono
        rate, source = self._rate(state, obs)
        if rate is not None and state.pending_rate_at is not None:
            segment.rate.write(f"{state.pending_rate_at:.3f},{rate:.6g}\n")
        state.pending_rate_at = t_s if obs.fresh else None
        state.previous = obs if obs.fresh else None
        segment.observations.write(
            f"{t_s:.3f},{row.wall:.3f},{obs.depth},{_num(obs.in_flight)},"
            f"{_num(obs.oldest_wait_s)},{_num(obs.arrival_rate)},{_num(obs.completion_rate)},"
            f"{source},{int(obs.fresh)},{_num(row.desired)}\n"
        )

    @staticmethod
    def _rate(state: _PoolState, obs: Observation) -> tuple[float | None, str]:
        if not obs.fresh:
            return None, ""
        if obs.arrival_rate is not None:
            return obs.arrival_rate, "counter"
        before = state.previous
        if obs.completion_rate is None or before is None or obs.time <= before.time:
            return None, ""
        if obs.in_flight is None or before.in_flight is None:
            return None, ""
        held = (obs.depth + obs.in_flight) - (before.depth + before.in_flight)
        return max(0.0, obs.completion_rate + held / (obs.time - before.time)), "estimated"

    def _open_segment(self, row: _Row) -> _Segment:
        folder = self.directory / row.pool
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(row.wall))
        rate = _open_new(folder / f"rate-{stamp}.csv", RATE_HEADER)
        observations = _open_new(folder / f"observations-{stamp}.csv", OBS_HEADER)
        return _Segment(row.mono, rate, observations)

    def _flush(self, pools: set[str]) -> None:
        for name in pools:
            segment = self._pools[name].segment
            if segment is not None:
                segment.rate.flush()
                segment.observations.flush()

    @staticmethod
    def _close_segment(state: _PoolState) -> None:
        segment, state.segment = state.segment, None
        if segment is None:
            return
        for handle in (segment.rate, segment.observations):
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                pass
            finally:
                handle.close()


def _open_new(path: Path, header: str) -> IO[str]:
    """A fresh file (never appended to: a restarted daemon in the same second gets ``-1``)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    handle = candidate.open("x", encoding="utf-8", buffering=1 << 16)
    handle.write(header)
    return handle


def _num(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"
