"""Types of the C extension ``autoscaler.simulations._ckernel`` (see _ckernel.c and kernel.py)."""

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_I8 = npt.NDArray[np.int8]

def rebuild_heap(
    accept: _I8, ready: _F64, slots: int, slot_until: _F64, heap_t: _F64, heap_s: _I64,
    ist: _I64, /,
) -> None: ...
def advance(
    t_end: float, arrival: _F64, service: _F64, wait: _F64, done: _F64, ist: _I64,
    rq_id: _I64, rq_t: _F64, heap_t: _F64, heap_s: _I64, slot_until: _F64, slot_req: _I64, /,
) -> None: ...
def in_flight(t: float, slot_until: _F64, slot_req: _I64, /) -> int: ...
def preempt(
    inst: int, t: float, slots: int, slot_until: _F64, slot_req: _I64, done: _F64, ist: _I64,
    rq_id: _I64, rq_t: _F64, /,
) -> int: ...
