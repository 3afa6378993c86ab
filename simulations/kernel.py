"""The compiled FCFS core: requests meet slots, one heap operation per request.

Every slot of every instance that accepts work sits in a min-heap keyed by the time it can next
start a request (``max(busy until, instance ready)``). FCFS on many servers is then: the head
of the queue starts at ``max(its enqueue time, heap top)`` on the heap-top slot. The loop stops
at the first request that would start at or after ``t_end`` and resumes there on the next call,
so the Python controller can tick in between; the heap only changes membership at those
boundaries (launch, drain, preemption), where it is rebuilt from the slot arrays.

Requests re-queued after a spot preemption wait in a small ring buffer that is served before
the main queue (they go back at the head).

The loops are C (``simulations/_ckernel.c``): the simulator's whole-process time is mostly
start-up, and a C extension loads in a millisecond where a JIT costs a large part of a second.
This module holds the layout the Python side shares with it and re-exports its functions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from autoscaler.simulations._ckernel import advance as advance
from autoscaler.simulations._ckernel import in_flight as in_flight
from autoscaler.simulations._ckernel import preempt as preempt
from autoscaler.simulations._ckernel import rebuild_heap as rebuild_heap

# Indices into the int64 scalar array ``ist`` (mirrored in _ckernel.c).
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
