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
    if service_rate <= 0 or not math.isfinite(service_rate):
        raise ValueError(f"min_servers: service rate must be finite and > 0, got {service_rate}")
    if arrival_rate < 0 or not math.isfinite(arrival_rate):
        raise ValueError(f"min_servers: arrival rate must be finite and >= 0, got {arrival_rate}")
    if step < 1:
        raise ValueError(f"min_servers: step must be >= 1, got {step}")
    if not variability > 0:
        raise ValueError(f"min_servers: variability must be > 0, got {variability}")
    ceiling = -(-upper // step) * step
    if arrival_rate == 0:
        return min(-(-lower // step) * step, ceiling)
    a = arrival_rate / service_rate
    first = max(lower, int(a) + 1)
    first = -(-first // step) * step
    if first >= ceiling:
        return ceiling
    log_tail = math.log(tail) if tail > 0 else -math.inf
    k, b = _start(a)
    c = first
    while c < ceiling:
        for j in range(k + 1, c + 1):
            ab = a * b
            b = ab / (j + ab)
        k = c
        prob_wait = erlang_c_from_b(c, a, b)
        decay = (c * service_rate - arrival_rate) * max_wait_s / variability
        if prob_wait <= 0 or math.log(prob_wait) - decay <= log_tail:
            return c
        c += step
    return ceiling
