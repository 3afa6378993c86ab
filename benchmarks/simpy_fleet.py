"""The same fixed fleet as ``bench_simulator`` written the usual SimPy way, as lean as it goes.

One ``simpy.Resource`` with ``instances * slots`` capacity (FIFO, like the kernel's FCFS), one
generator feeding arrivals and one process per request. To be an honest baseline it does the
least SimPy allows: no controller (the fleet is fixed), no monitoring, bound methods hoisted
out of the loops, waits in a plain list, and the resource released explicitly instead of
through a context manager. A SimPy model of the
real simulator (controller ticks, boots, drains, spot) would only be slower.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy


def simulate_fixed(
    arrival: np.ndarray[Any, Any], service: np.ndarray[Any, Any], servers: int
) -> np.ndarray[Any, Any]:
    """Queue waits per request on ``servers`` identical FCFS servers."""
    env = simpy.Environment()
    slots = simpy.Resource(env, capacity=servers)
    request, release, timeout, process = slots.request, slots.release, env.timeout, env.process
    waits = [0.0] * len(arrival)

    def serve(k: int, svc: float) -> Generator[Any, Any, None]:
        arrived = env.now  # the clock SimPy reached, so an immediate start waits exactly 0
        grant = request()
        yield grant
        waits[k] = env.now - arrived
        yield timeout(svc)
        release(grant)

    def source() -> Generator[Any, Any, None]:
        previous = 0.0
        for k, (a, s) in enumerate(zip(arrival.tolist(), service.tolist(), strict=True)):
            yield timeout(a - previous)
            previous = a
            process(serve(k, s))

    process(source())
    env.run()
    return np.array(waits)
