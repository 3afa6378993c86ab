"""M/M/c (Erlang C) arithmetic for the ``sla`` policy, stable from 1 to 10,000+ servers.

Notation: ``a = λ/μ`` is the offered load in erlangs (busy servers needed on average), ``c``
the number of servers (slots), ``μ`` the service rate of one slot.

* Erlang B by the classic recursion ``B(0) = 1``, ``B(k) = a·B(k-1) / (k + a·B(k-1))``. Every
  step stays in (0, 1], so nothing overflows even at c = 10,000 (the textbook closed form
  ``a^c/c!`` over a sum overflows a float near c ≈ 170).
* Erlang C from B: ``C(c, a) = c·B / (c - a·(1 - B))`` for ``a < c`` (1 otherwise): the
  probability that an arrival has to wait at all.
* Tail of the wait: ``P(W > t) = C(c, a) · exp(-(c·μ - λ)·t)``.

Why a warm start: the recursion is a contraction (each step shrinks an error by about
``min(k/a, a/k)``), so starting it at ``k0 = a - 6*sqrt(a)`` from the fluid value
``B ~ 1 - k0/a`` (relative error ~1/36) shrinks the error by ~e^-18 on the way back to ``a``:
about 1e-9 relative, O(sqrt(a)) work instead of O(a). Below a = 36 it starts at 0, exact.

``min_servers`` searches upward in steps of ``step`` slots (one instance) from
``max(lower, ⌊a⌋ + 1)``; ``P(W > t)`` falls monotonically in ``c``, so the first ``c`` that
meets the bound is the least one. The recursion is advanced once along the way, never
restarted, so the search costs the same as one evaluation at the answer, which square-root
staffing puts at ``a + β·√a`` for a β of about 1-3.

``min_servers_bounds`` brackets that answer in O(1) without the recursion, for callers that
only compare it with a threshold (the ``sla`` policy's burst and scale-in checks).
"""

from __future__ import annotations

import math

_WARM_START_LOAD = 36.0
_WARM_START_SIGMAS = 6.0


def _start(a: float) -> tuple[int, float]:
    """Where the Erlang B recursion may start for load ``a``: (k0, B(k0, a))."""
    if a < _WARM_START_LOAD:
        return 0, 1.0
    k0 = int(a - _WARM_START_SIGMAS * math.sqrt(a))
    return k0, 1.0 - k0 / a


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of an M/M/c/c system (Erlang B); 1.0 for c = 0."""
    if c < 0:
        raise ValueError(f"erlang_b: servers must be >= 0, got {c}")
    if a < 0 or not math.isfinite(a):
        raise ValueError(f"erlang_b: load must be finite and >= 0, got {a}")
    if a == 0:
        return 1.0 if c == 0 else 0.0
    k, b = _start(a)
    if k > c:
        k, b = 0, 1.0
    while k < c:
        k += 1
        ab = a * b
        b = ab / (k + ab)
    return b


def erlang_c_from_b(c: int, a: float, b: float) -> float:
    """Probability of waiting (Erlang C) from Erlang B; 1.0 when the system is overloaded."""
    if a >= c:
        return 1.0
    return c * b / (c - a * (1.0 - b))


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with load ``a`` (1.0 if a >= c)."""
    return erlang_c_from_b(c, a, erlang_b(c, a))


def wait_tail(c: int, arrival_rate: float, service_rate: float, t: float) -> float:
    """``P(W > t)`` for M/M/c with ``c`` servers, each serving ``service_rate`` per second."""
    if service_rate <= 0:
        raise ValueError(f"wait_tail: service rate must be > 0, got {service_rate}")
    a = arrival_rate / service_rate
    if a >= c:
        return 1.0
    return erlang_c(c, a) * math.exp(-(c * service_rate - arrival_rate) * t)


def _check(name: str, arrival_rate: float, service_rate: float, step: int, v: float) -> None:
    """Reject what the search cannot use, naming the function (NaN fails every comparison)."""
    if not 0 < service_rate < math.inf:
        raise ValueError(f"{name}: service rate must be finite and > 0, got {service_rate}")
    if not 0 <= arrival_rate < math.inf:
        raise ValueError(f"{name}: arrival rate must be finite and >= 0, got {arrival_rate}")
    if step < 1:
        raise ValueError(f"{name}: step must be >= 1, got {step}")
    if not v > 0:
        raise ValueError(f"{name}: variability must be > 0, got {v}")


def _search_range(
    arrival_rate: float, service_rate: float, step: int, lower: int, upper: int
) -> tuple[int, int]:
    """``(first, ceiling)``: where the search starts and the most it may return, both
    multiples of ``step``. ``first`` is the least stable count at or above ``lower`` (every
    count at or above ``lower`` when nothing arrives, which is then the answer), capped at
    ``ceiling`` (then the answer as well)."""
    ceiling = -(-upper // step) * step
    first = lower
    if arrival_rate != 0:
        stable = int(arrival_rate / service_rate) + 1
        first = stable if stable > lower else lower
    first = -(-first // step) * step
    return (first if first < ceiling else ceiling), ceiling


def min_servers(
    arrival_rate: float,
    service_rate: float,
    max_wait_s: float,
    tail: float,
    *,
    step: int = 1,
    lower: int = 0,
    upper: int = 10**7,
    variability: float = 1.0,
) -> int:
    """The least multiple of ``step`` (>= ``lower``) with ``P(W > max_wait_s) <= tail``.

    ``variability`` is the Allen-Cunneen factor ``(ca² + cs²) / 2`` (1 for M/M/c): the wait
    tail of a G/G/c queue decays that many times more slowly, ``exp(-(cμ - λ)·t / v)``.

    Returns ``upper`` rounded up to a multiple of ``step`` when even that does not suffice, so a
    caller capping at its pool's max gets the cap instead of an endless search.
    """
    _check("min_servers", arrival_rate, service_rate, step, variability)
    first, ceiling = _search_range(arrival_rate, service_rate, step, lower, upper)
    if arrival_rate == 0 or first == ceiling:
        return first
    a = arrival_rate / service_rate
    log_tail = math.log(tail) if tail > 0 else -math.inf
    # Written out inline: this runs one to three times per pool per tick, and call overhead
    # was most of its cost. The arithmetic is term for term that of ``erlang_b``,
    # ``erlang_c_from_b`` (c >= first > a here) and the exponent of ``wait_tail``.
    k, b = _start(a)
    for j in range(k + 1, first + 1):
        ab = a * b
        b = ab / (j + ab)
    c = first
    log = math.log
    while True:
        prob_wait = c * b / (c - a * (1.0 - b))
        if prob_wait <= 0:
            return c
        decay = (c * service_rate - arrival_rate) * max_wait_s / variability
        if log(prob_wait) - decay <= log_tail:
            return c
        if c + step >= ceiling:
            return ceiling
        if step == 1:
            c += 1
            ab = a * b
            b = ab / (c + ab)
        else:
            for j in range(c + 1, c + step + 1):
                ab = a * b
                b = ab / (j + ab)
            c += step


def min_servers_bounds(
    arrival_rate: float,
    service_rate: float,
    max_wait_s: float,
    tail: float,
    *,
    step: int = 1,
    lower: int = 0,
    upper: int = 10**7,
    variability: float = 1.0,
) -> tuple[int, int]:
    """``(lo, hi)`` with ``lo <= min_servers(...) <= hi`` for the same arguments, in O(1).

    For a caller that only compares the answer with a threshold, so it may skip the search.
    ``lo`` is where the search starts (the least stable count). ``hi``: for ``c > a`` the
    probability of waiting ``C(c, a)`` is at most 1, so ``P(W > t) <= exp(-(cμ - λ)·t / v)``,
    which meets ``tail`` once ``c >= (λ + ln(1/tail)·v/t) / μ``; one more step absorbs the
    search's rounding (its log of a probability may exceed 0 by a few ulps).
    """
    _check("min_servers_bounds", arrival_rate, service_rate, step, variability)
    first, ceiling = _search_range(arrival_rate, service_rate, step, lower, upper)
    if arrival_rate == 0 or first == ceiling:
        return first, first
    if not (tail > 0 and max_wait_s > 0):
        return first, ceiling
    # At least a + 1 slots (the log is clamped for tails >= 1): at c >= a + 1 the computed
    # C(c, a) has no cancellation in c - a·(1 - B), so it exceeds 1 by a few ulps at most.
    nats = math.log(1.0 / tail)
    nats = nats if nats > 0.0 else 0.0
    enough = (arrival_rate + nats * variability / max_wait_s) / service_rate
    if not enough < ceiling:  # also catches an infinite or NaN bound
        return first, ceiling
    hi = math.ceil(enough) + step
    hi = hi if hi > first else first
    return first, min(-(-hi // step) * step, ceiling)
