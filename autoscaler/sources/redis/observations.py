"""Building ``Observation`` objects at the rate the Redis sampler needs (one per pool per tick).

``Observation`` is a frozen, slotted dataclass: its generated ``__init__`` sets each field
through ``object.__setattr__``, about 1.5 µs on this project's machines, which was the largest
single cost of decoding 1000 pools. ``observation()`` makes the same object by setting the
slots directly (about half the time). It is used only when the dataclass has exactly the
fields it knows, in that order, and no ``__post_init__``; otherwise it is the dataclass itself,
so a change to ``Observation`` can make sampling slower but never wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from autoscaler.core.model import Observation

FIELDS = ("time", "depth", "oldest_wait_s", "in_flight", "arrival_rate", "completion_rate",
          "fresh")

Make = Callable[[float, int, float | None, int | None, float | None, float | None], Observation]


def _direct() -> Make:
    new = object.__new__
    set_time, set_depth, set_wait, set_busy, set_arr, set_done, set_fresh = (
        getattr(Observation, name).__set__ for name in FIELDS
    )

    def observation(time: float, depth: int, wait: float | None, in_flight: int | None,
                    arrival_rate: float | None, completion_rate: float | None) -> Observation:
        """A fresh ``Observation(time, depth, wait, in_flight, arrival_rate, completion_rate)``."""
        obs: Observation = new(Observation)
        set_time(obs, time)
        set_depth(obs, depth)
        set_wait(obs, wait)
        set_busy(obs, in_flight)
        set_arr(obs, arrival_rate)
        set_done(obs, completion_rate)
        set_fresh(obs, True)
        return obs

    return observation


def _plain(time: float, depth: int, wait: float | None, in_flight: int | None,
           arrival_rate: float | None, completion_rate: float | None) -> Observation:
    return Observation(time, depth, wait, in_flight, arrival_rate, completion_rate)


def _choose() -> Make:
    layout = tuple(f.name for f in fields(Observation))
    slotted = getattr(Observation, "__slots__", None) is not None
    if layout == FIELDS and slotted and not hasattr(Observation, "__post_init__"):
        return _direct()
    return _plain


observation: Make = _choose()
