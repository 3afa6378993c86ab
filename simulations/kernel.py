"""The compiled FCFS core: requests meet slots, one heap operation per request.

Every slot of every instance that accepts work sits in a min-heap keyed by the time it can next
start a request (``max(busy until, instance ready)``). FCFS on many servers is then: the head
of the queue starts at ``max(its enqueue time, heap top)`` on the heap-top slot. The loop stops
at the first request that would start at or after ``t_end`` and resumes there on the next call,
so the Python controller can tick in between; the heap only changes membership at those
boundaries (launch, drain, preemption), where it is rebuilt from the slot arrays.

Requests re-queued after a spot preemption wait in a small ring buffer that is served before
the main queue (they go back at the head).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

# Indices into the int64 scalar array ``ist``.
Q_NEXT = 0  # next request of the main queue that has not started
HEAP_N = 1  # live heap entries
RQ_HEAD = 2  # ring-buffer head of re-queued requests
RQ_COUNT = 3  # re-queued requests waiting
DISPATCHED = 4  # starts so far (a re-queued request starts twice)
REQUEUED = 5  # preempted in-flight requests put back
N_SCALARS = 6

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


@njit(cache=True)
def _sift_down(heap_t: F64, heap_s: I64, n: int, pos: int) -> None:
    t = heap_t[pos]
    s = heap_s[pos]
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and heap_t[right] < heap_t[child]:
            child = right
        if heap_t[child] >= t:
            break
        heap_t[pos] = heap_t[child]
        heap_s[pos] = heap_s[child]
        pos = child
    heap_t[pos] = t
    heap_s[pos] = s


@njit(cache=True)
def rebuild_heap(
    accept: I8, ready: F64, slots: int, slot_until: F64, heap_t: F64, heap_s: I64, ist: I64
) -> None:
    """Put every slot of every accepting instance in the heap (O(slots), at boundaries only)."""
    n = 0
    for inst in range(accept.shape[0]):
        if accept[inst] == 0:
            continue
        for k in range(slots):
            j = inst * slots + k
            heap_t[n] = max(slot_until[j], ready[inst])
            heap_s[n] = j
            n += 1
    for pos in range(n // 2 - 1, -1, -1):
        _sift_down(heap_t, heap_s, n, pos)
    ist[HEAP_N] = n


@njit(cache=True)
def advance(
    t_end: float,
    arrival: F64,
    service: F64,
    wait: F64,
    done: F64,
    ist: I64,
    rq_id: I64,
    rq_t: F64,
    heap_t: F64,
    heap_s: I64,
    slot_until: F64,
    slot_req: I64,
) -> None:
    """Start every request that can start before ``t_end``, in FCFS order."""
    n = arrival.shape[0]
    cap = rq_id.shape[0]
    q = ist[Q_NEXT]
    hn = ist[HEAP_N]
    while hn > 0:
        if ist[RQ_COUNT] > 0:
            rid = rq_id[ist[RQ_HEAD]]
            ready = rq_t[ist[RQ_HEAD]]
        elif q < n:
            rid = q
            ready = arrival[q]
        else:
            break
        top = heap_t[0]
        start = ready if ready > top else top
        if start >= t_end:
            break
        slot = heap_s[0]
        wait[rid] += start - ready
        finish = start + service[rid]
        done[rid] = finish
        slot_until[slot] = finish
        slot_req[slot] = rid
        heap_t[0] = finish
        _sift_down(heap_t, heap_s, hn, 0)
        ist[DISPATCHED] += 1
        if ist[RQ_COUNT] > 0:
            ist[RQ_HEAD] = (ist[RQ_HEAD] + 1) % cap
            ist[RQ_COUNT] -= 1
        else:
            q += 1
    ist[Q_NEXT] = q


@njit(cache=True)
def in_flight(t: float, slot_until: F64, slot_req: I64) -> int:
    """Slots serving a request at ``t``."""
    busy = 0
    for j in range(slot_until.shape[0]):
        if slot_req[j] >= 0 and slot_until[j] > t:
            busy += 1
    return busy


@njit(cache=True)
def preempt(
    inst: int, t: float, slots: int, slot_until: F64, slot_req: I64, done: F64,
    ist: I64, rq_id: I64, rq_t: F64,
) -> int:
    """Take an instance away at ``t``: its in-flight requests go back at the head of the queue.

    Returns how many were re-queued. They keep the wait already accrued and accrue more from
    ``t`` until they start again; the partial service is lost (the work is redone).
    """
    cap = rq_id.shape[0]
    moved = 0
    for k in range(slots):
        j = inst * slots + k
        rid = slot_req[j]
        if rid >= 0 and slot_until[j] > t:
            # Head of the queue: insert before the current head.
            ist[RQ_HEAD] = (ist[RQ_HEAD] - 1) % cap
            rq_id[ist[RQ_HEAD]] = rid
            rq_t[ist[RQ_HEAD]] = t
            ist[RQ_COUNT] += 1
            ist[REQUEUED] += 1
            done[rid] = np.nan
            slot_until[j] = t
            moved += 1
        slot_req[j] = -1
    return moved
