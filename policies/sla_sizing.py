"""The ``sla`` policy's sizing arithmetic: per-pool constants and the pure formulas the
decision flow in ``autoscaler.policies.sla`` combines (the miss probability sized for, the
backlog term, slots to instances, the loose-SLA fluid bound). Kept apart from the policy so
that each formula reads and tests on its own; the model they implement is described in the
``sla`` module's docstring."""

from __future__ import annotations

import math
from typing import NamedTuple

from autoscaler.core.model import FleetState, Observation
from autoscaler.core.policy import PoolSettings

__all__ = [
    "LOOSE_SERVICES", "PEAKED", "PoolConstants", "backlog_slots", "fcfs_fluid_rate",
    "instances_for", "tail_for",
]


class PoolConstants(NamedTuple):
    """What ``SlaPolicy.recommend`` derives from the pool's settings, once per settings object.

    Each value is the expression the sizing used to evaluate inline (same operands, same
    order), so caching it changes no decision.
    """

    settings: PoolSettings
    slots: int
    max_instances: int
    upper: int  # most slots the search may return
    max_wait: float
    miss_budget: float  # 1 - target
    tail: float  # (1 - target) * budget_share: the miss probability sized for at k = 1
    boot: float
    ahead: float  # boot + interval: how far the load trend is extrapolated
    backlog_floor: float  # shortest backlog horizon: max(backlog_floor * max_wait, interval)
    grown_utilisation: float  # step_utilisation * (1 + max_wait / ahead): queueing allowed
    interval: float  # tick interval: how long a saturating surge is projected
    goal: str


PEAKED = 5.0  # index of dispersion above which the growth headroom does not apply
LOOSE_SERVICES = 10.0  # a wait budget of this many service times makes the queue a buffer


def tail_for(k: PoolConstants, budget: float) -> float:
    """The miss probability sized for at ``budget`` x the miss budget, at most one half."""
    tail = k.tail * budget
    return tail if tail < 0.5 else 0.5  # min(0.5, tail)


def backlog_slots(
    k: PoolConstants, obs: Observation, fleet: FleetState, planned: float, mu: float
) -> float | None:
    """Slots beyond the arrivals that clear the backlog left when new capacity lands
    (``Q_b / (mu*H)``), or ``None`` without one.

    The backlog is projected over the boot with the ``planned`` rate even when sizing for
    a burst: a few seconds' spike extrapolated over minutes of boot would order a fleet
    for traffic that is long gone when it lands.
    """
    if obs.depth <= 0:
        return None
    s, boot = k.slots, k.boot
    landing = (planned - fleet.running * s * mu) * boot - fleet.booting * s * mu * boot / 2
    backlog = obs.depth + landing
    if backlog <= 0:
        return None
    if obs.oldest_wait_s is None:  # unknown head wait: assume the tightest horizon
        horizon = k.backlog_floor
    else:
        horizon = max(k.max_wait - obs.oldest_wait_s - boot, k.backlog_floor)
    return backlog / (mu * horizon)


def instances_for(
    k: PoolConstants,
    rate: float,
    mu: float,
    peakedness: float,
    c_poisson: int,
    backlog: float | None,
) -> tuple[int, int, float]:
    """(instances, erlang slots, backlog slots) for ``c_poisson`` M/M/c slots.

    Never decreases as ``c_poisson`` grows, which ``SlaPolicy._size_bound`` relies on."""
    upper, a = k.upper, rate / mu
    extra = c_poisson - a
    c_erlang = math.ceil(a + (extra if extra > 0.0 else 0.0) * peakedness - 1e-9)
    c_erlang = c_erlang if c_erlang < upper else upper
    c_backlog = 0.0 if backlog is None else a + backlog
    slots = c_backlog if c_backlog > c_erlang else float(c_erlang)
    n, most = math.ceil(slots / k.slots - 1e-9), k.max_instances
    return (most if most < n else n), c_erlang, c_backlog


def fcfs_fluid_rate(depth: float, rate: float, spread: float, max_wait: float) -> float:
    """The least start rate S (requests a second) at which every request keeps its FCFS wait
    within ``max_wait`` when ``depth`` wait now and N(u) = rate*u + spread*sqrt(u) arrive
    over the next u seconds (``spread`` = q*sqrt(z*rate): the count's quantile, mean plus q
    standard deviations of a count with index of dispersion z).

    A request arriving u seconds on starts once the queue and the arrivals before it have
    started, (depth + N(u))/S seconds on, so it waits at most ``max_wait`` = t iff
    depth + N(u) <= S*(t + u). The binding u maximises (depth + N(u))/(t + u); with
    x = sqrt(u) and K = depth - rate*t that is S = rate + (spread*x + K)/(x^2 + t), at the
    root x = (sqrt(K^2 + spread^2*t) - K)/spread (and x -> infinity, S -> rate, without a
    spread). Never more than requiring the queue and all of one max_wait's arrivals to
    *start* within it, rate + (depth + spread*sqrt(t))/t, the bound this replaces: that one
    made the last of those arrivals wait zero, where the SLA lets it wait t as well."""
    gap = depth - rate * max_wait
    if spread > 0.0:
        x = (math.sqrt(gap * gap + spread * spread * max_wait) - gap) / spread
        excess = (spread * x + gap) / (x * x + max_wait)
    else:
        excess = gap / max_wait
    return rate + (excess if excess > 0.0 else 0.0)
