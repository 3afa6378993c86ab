"""Budget guardrails: accrued cost per calendar month, alert crossings and the hard cap.

Pure arithmetic on the wall clock's epoch seconds (passed in, never read): the daemon's
cross-pool step (``autoscaler.runtime.budget``) and the simulator apply the same functions.

Accrual: every tick the shell observes each pool's billed instances (booting + running +
draining, per group; pending instances are not billed yet) and prices them at the group's
``hourly_price``. The rate seen at one observation is charged until the next one (a left
Riemann sum, so a resize is billed from the tick that sees it). Calendar months are UTC; an
interval that straddles a month boundary is split at it, and the new month starts from zero.

The hard cap refuses scale-out whose projected rate, held for the rest of the month, would
exceed what is left of the budget. It never scales in, and never goes below ``min``: a pool
already over its allowance keeps what it has.

What is not guaranteed: time the shell did not observe (the daemon was down for longer than
``max_gap_s``) is not charged, so a long outage under-counts; prices are the configured ones,
not the bill (no discounts, storage, traffic or per-second minimums).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from autoscaler.core.allocator import Allocator
from autoscaler.core.model import Decision, FleetState

GLOBAL_SCOPE = "global"
"""The scope of the whole config's budget; a pool's scope is ``pool:NAME``."""

ALERT = 1
EXHAUSTED = 2
LEVEL_NAMES = {ALERT: "alert", EXHAUSTED: "exhausted"}


def pool_scope(pool: str) -> str:
    return f"pool:{pool}"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """One scope's monthly budget: alert at ``alert_at`` of it, refuse scale-out past it when
    ``hard_cap``."""

    scope: str
    monthly_usd: float
    alert_at: float = 0.8
    hard_cap: bool = False


@dataclass(frozen=True, slots=True)
class Ledger:
    """What one scope has spent in one calendar month (UTC), and what it was last billed at.

    ``alerted`` is the highest level already announced this month (0, ``ALERT`` or
    ``EXHAUSTED``), so each crossing is reported once, across restarts too."""

    month: str
    spent_usd: float = 0.0
    rate_usd_per_h: float = 0.0
    last_wall: float | None = None
    alerted: int = 0


def _utc(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, tz=UTC)


def month_of(wall: float) -> str:
    """``YYYY-MM`` of an epoch second, in UTC."""
    t = _utc(wall)
    return f"{t.year:04d}-{t.month:02d}"


def month_start(wall: float) -> float:
    t = _utc(wall)
    return datetime(t.year, t.month, 1, tzinfo=UTC).timestamp()


def month_end(wall: float) -> float:
    """The epoch second the next UTC month starts at."""
    t = _utc(wall)
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def billed_rate(fleet: FleetState, prices: Mapping[str, float]) -> float:
    """Dollars per hour of the instances billed now: booting, running and draining."""
    return sum((g.booting + g.running + g.draining) * prices.get(g.name, 0.0)
               for g in fleet.groups)


def planned_rate(targets: Mapping[str, int], prices: Mapping[str, float]) -> float:
    """Dollars per hour once every group has reached its target."""
    return sum(n * prices.get(name, 0.0) for name, n in targets.items())


def accrue(ledger: Ledger, wall: float, rate_usd_per_h: float, *, max_gap_s: float) -> Ledger:
    """Charge the previous rate up to ``wall`` (at most ``max_gap_s`` of it), then carry the
    new rate. A wall clock that went backwards charges nothing; a new month starts at 0."""
    month = month_of(wall)
    spent = ledger.spent_usd
    if ledger.last_wall is not None and wall > ledger.last_wall:
        start = max(ledger.last_wall, wall - max_gap_s)
        in_month = wall - max(start, month_start(wall))
        if month != ledger.month:
            spent = 0.0  # the old month is closed; only its share in the new month counts
        spent += ledger.rate_usd_per_h * max(0.0, in_month) / 3600.0
    elif month != ledger.month:
        spent = 0.0
    alerted = ledger.alerted if month == ledger.month else 0
    last = wall if ledger.last_wall is None else max(wall, ledger.last_wall)
    return Ledger(month, spent, max(0.0, rate_usd_per_h), last, alerted)


def used_ratio(spec: BudgetSpec, ledger: Ledger) -> float:
    return ledger.spent_usd / spec.monthly_usd if spec.monthly_usd > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Crossing:
    """A level newly reached this month: ``alert`` (``alert_at``) or ``exhausted`` (100 %)."""

    scope: str
    level: str
    ratio: float
    spent_usd: float
    monthly_usd: float
    month: str


def crossings(spec: BudgetSpec, ledger: Ledger) -> tuple[Ledger, tuple[Crossing, ...]]:
    """The levels reached since the last call (each once per month) and the ledger that
    remembers them."""
    ratio = used_ratio(spec, ledger)
    level = EXHAUSTED if ratio >= 1.0 else ALERT if ratio >= spec.alert_at else 0
    if level <= ledger.alerted:
        return ledger, ()
    found = tuple(
        Crossing(spec.scope, LEVEL_NAMES[lv], ratio, ledger.spent_usd, spec.monthly_usd,
                 ledger.month)
        for lv in range(ledger.alerted + 1, level + 1)
    )
    return replace(ledger, alerted=level), found


def allowance_usd_per_h(spec: BudgetSpec, ledger: Ledger, wall: float) -> float | None:
    """The hourly rate the rest of the budget pays for until the month ends (None: no cap)."""
    if not spec.hard_cap:
        return None
    left_h = max(month_end(wall) - wall, 1.0) / 3600.0
    return max(0.0, spec.monthly_usd - ledger.spent_usd) / left_h


def max_gap_for(interval_s: float) -> float:
    """The longest unobserved stretch charged at the last rate: two minutes, or five ticks on
    a slow loop (a longer outage is not billed on a guess)."""
    return max(120.0, 5 * interval_s)


def charge(
    spec: BudgetSpec, ledger: Ledger | None, wall: float, rate_usd_per_h: float, *,
    max_gap_s: float,
) -> tuple[Ledger, tuple[Crossing, ...], float | None]:
    """One tick of one scope, as the daemon and the simulator both run it: accrue up to
    ``wall`` (a missing ledger starts the month), the levels newly crossed, and the hourly
    allowance the rest of the budget leaves (None: no hard cap)."""
    ledger, found = crossings(spec, accrue(ledger or Ledger(month_of(wall)), wall,
                                           rate_usd_per_h, max_gap_s=max_gap_s))
    return ledger, found, allowance_usd_per_h(spec, ledger, wall)


@dataclass(frozen=True, slots=True)
class CapInput:
    """One pool's decision and what the cap needs to re-spread a smaller total."""

    decision: Decision
    fleet: FleetState
    allocator: Allocator
    prices: Mapping[str, float]
    floor: int
    """``capacity.min``: the cap never goes below it."""
    scopes: Sequence[str] = field(default=())
    """The budget scopes the pool counts against (its own, the global one)."""


def cap_scale_out(
    pools: Mapping[str, CapInput], allowances: Mapping[str, float | None]
) -> dict[str, Decision]:
    """The decisions with scale-out the allowances cannot pay for removed.

    Every pool first gets what it already has (its decision if that is no scale-out, else
    ``max(min, current)``); the planned rates of those count against every scope they belong
    to. Then the wanted extra instances are granted one at a time, round robin over the pools
    in name order, while every capped scope of the pool still has room for the extra
    instance's price. Pools whose scopes have no cap keep their decision untouched."""
    used: dict[str, float] = dict.fromkeys(allowances, 0.0)
    granted: dict[str, int] = {}
    rate_at: dict[str, float] = {}  # the planned rate at the granted count
    for name, p in pools.items():
        base = _base(p)
        granted[name] = base
        rate = rate_at[name] = planned_rate(_targets(p, base), p.prices)
        for scope in p.scopes:
            if scope in used:
                used[scope] += rate
    waiting = sorted(n for n, p in pools.items() if _capped(p, allowances)
                     and granted[n] < p.decision.desired)
    while waiting:
        for name in list(waiting):
            p = pools[name]
            n = granted[name] + 1
            rate = planned_rate(_targets(p, n), p.prices)
            extra = rate - rate_at[name]
            if _fits(p.scopes, used, allowances, extra):
                granted[name], rate_at[name] = n, rate
                for s in p.scopes:
                    if s in used:
                        used[s] += extra
                if n < p.decision.desired:
                    continue
            waiting.remove(name)
    out: dict[str, Decision] = {}
    for name, p in pools.items():
        d = p.decision
        if not _capped(p, allowances) or granted[name] >= d.desired:
            out[name] = d
            continue
        n = granted[name]
        out[name] = replace(
            d, desired=n, targets=_targets(p, n),
            reason=f"{d.reason}; budget: scale-out held at {n} (wanted {d.desired})",
            terms={**d.terms, "budget_capped_from": d.desired},
        )
    return out


def _fits(scopes: Sequence[str], used: Mapping[str, float],
          allowances: Mapping[str, float | None], extra: float) -> bool:
    for scope in scopes:
        allowed = allowances.get(scope)
        if allowed is not None and used.get(scope, 0.0) + extra > allowed + 1e-9:
            return False
    return True


def _capped(p: CapInput, allowances: Mapping[str, float | None]) -> bool:
    return any(allowances.get(s) is not None for s in p.scopes)


def _base(p: CapInput) -> int:
    d = p.decision
    return d.desired if d.desired <= d.current else max(p.floor, d.current)


def _targets(p: CapInput, n: int) -> dict[str, int]:
    if n == p.decision.desired:
        return dict(p.decision.targets)
    return p.allocator.allocate(n, p.fleet)
