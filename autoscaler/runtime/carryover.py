"""What the daemon's shell remembers besides the controllers, saved with each pool's state.

Two memories, saved in every pool's state record (``autoscaler.runtime.persistence``) and kept
even when its controller state is discarded (they describe the groups and the queue, not the
policy):

* **capacity holds** (``autoscaler.core.availability.Holds``): a group held unavailable after a
  stockout, a boot timeout or a crash loop stays held, with its backoff, across a restart; a
  restarted daemon does not retry a stocked-out spot group at once. A hold is saved while it
  can still matter: until ``cap_s`` after it ends (after that a new failure starts a fresh
  hold anyway). Holds of groups no longer in the pool are not resumed.
* **boot-watch timings** (``autoscaler.core.availability.BootWatch``): since when each group
  has had instances waiting without progress, so a restart does not restart the
  ``boot_timeout`` clock of a group whose instances are stuck. Resumed only from a record
  saved less than one ``boot_timeout`` ago (older, the fleet may have changed in between:
  the watch starts afresh, as without a store).
* **counter baselines** (``autoscaler.ports.source.CounterBaselines``): the last readings of
  each pool's arrival and completion counters, so the first tick after a restart has rates
  (averaged over the gap since the saved reading). A baseline older than
  ``BASELINE_MAX_AGE_S`` is not resumed: the rate would average over a long outage and report
  the past as the present; the first tick then has no rates, as without a store.

Times are the daemon clock's (``LoopClock``: wall-clock scale at start-up), as for the
controller state, with the same caveat about hosts' clocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autoscaler.core.availability import BootWatch, Hold, Holds
from autoscaler.core.state_codec import StateCodec, StateCodecError
from autoscaler.ports.provider import GroupId
from autoscaler.ports.source import Baselines, CounterBaselines, QueueSampler

BASELINE_MAX_AGE_S = 300.0
"""Saved counter readings older than this are not resumed (see the module docstring)."""


def holds_by_pool(holds: Holds[GroupId], now: float) -> dict[str, dict[str, Hold]]:
    """The holds worth saving (ended less than ``cap_s`` ago), per pool, by group name."""
    out: dict[str, dict[str, Hold]] = {}
    for gid, hold in holds.marks.items():
        if now - hold.until <= holds.cap_s:
            out.setdefault(gid.pool, {})[gid.group] = hold
    return out


def decode_holds(codec: StateCodec, data: Any) -> dict[str, Hold]:
    """Saved holds by group name; ``StateCodecError`` for anything else."""
    value = codec.decode(data)
    if not isinstance(value, dict) or not all(isinstance(h, Hold) for h in value.values()):
        raise StateCodecError("holds: not a mapping of group names to holds")
    if not all(math.isfinite(h.until) and h.hold_s > 0 for h in value.values()):
        raise StateCodecError("holds: a hold without a finite end and a positive length")
    return value


def resume_holds(
    holds: Holds[GroupId], pool: str, groups: Iterable[str], saved: Mapping[str, Hold],
    now: float,
) -> list[tuple[str, Hold]]:
    """Adopt saved holds of the pool's current groups that still matter and end later than
    any hold this process already has; returns those adopted."""
    names = set(groups)
    adopted = []
    for name, hold in saved.items():
        gid = GroupId(pool, name)
        current = holds.marks.get(gid)
        if (name in names and now - hold.until <= holds.cap_s
                and (current is None or current.until < hold.until)):
            holds.marks[gid] = hold
            adopted.append((name, hold))
    return adopted


def decode_timings(codec: StateCodec, data: Any) -> dict[str, tuple[float, int]]:
    """Saved boot-watch timings by group name; ``StateCodecError`` for anything else."""
    value = codec.decode(data)
    if not isinstance(value, dict):
        raise StateCodecError("boot watch: not a mapping of group names to timings")
    out: dict[str, tuple[float, int]] = {}
    for name, timing in value.items():
        reading = _reading(timing)
        if reading is None:
            raise StateCodecError(f"boot watch: no timing for {name!r:.40}")
        out[name] = reading
    return out


def timings_of(watch: BootWatch[GroupId] | None) -> dict[str, tuple[float, int]]:
    """The pool's boot-watch timings by group name (empty without a watch)."""
    return {} if watch is None else {gid.group: t for gid, t in watch.timing().items()}


def resume_timings(
    watch: BootWatch[GroupId], pool: str, groups: Iterable[str],
    saved: Mapping[str, tuple[float, int]], age_s: float,
) -> list[str]:
    """Adopt saved timings of the pool's current groups if the record is younger than the
    watch's timeout; the groups adopted."""
    if not 0.0 <= age_s <= watch.timeout_s:
        return []
    names = set(groups)
    return [name for name, (since, running) in saved.items()
            if name in names and watch.resume(GroupId(pool, name), since, running)]


def baselines_of(samplers: Sequence[QueueSampler]) -> dict[str, Baselines]:
    """Every pool's counter baselines, from the samplers that keep them."""
    out: dict[str, Baselines] = {}
    for sampler in samplers:
        if isinstance(sampler, CounterBaselines):
            out.update(sampler.baselines())
    return out


def _reading(value: Any) -> tuple[float, int] | None:
    if value is None:
        return None
    if (isinstance(value, tuple) and len(value) == 2
            and isinstance(value[0], int | float) and not isinstance(value[0], bool)
            and math.isfinite(value[0])
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        return float(value[0]), value[1]
    raise StateCodecError(f"baselines: not a (time, count) reading: {value!r:.60}")


def decode_baselines(codec: StateCodec, data: Any) -> Baselines | None:
    """Saved ``(arrivals, completions)`` readings, or None; ``StateCodecError`` otherwise."""
    value = codec.decode(data)
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise StateCodecError("baselines: not an (arrivals, completions) pair")
    return _reading(value[0]), _reading(value[1])


def fresh_baselines(saved: Baselines, now: float) -> Baselines | None:
    """The saved readings young enough to resume (and not from the future), or None."""
    kept = tuple(r if r is not None and 0.0 <= now - r[0] <= BASELINE_MAX_AGE_S else None
                 for r in saved)
    arrivals, completions = kept
    return None if arrivals is None and completions is None else (arrivals, completions)


def resume_baselines(
    samplers: Sequence[QueueSampler], saved: Mapping[str, Baselines]
) -> list[str]:
    """Hand saved baselines to the samplers that keep them; the pools resumed."""
    resumed: list[str] = []
    if saved:
        for sampler in samplers:
            if isinstance(sampler, CounterBaselines):
                resumed.extend(sampler.resume_baselines(saved))
    return resumed
