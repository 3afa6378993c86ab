"""The same fixed fleet as ``bench_simulator`` written the usual SimPy way, for comparison.

One ``simpy.Resource`` with ``instances * slots`` capacity (FIFO, like the kernel's FCFS), one
generator for arrivals and one process per request. No controller: the fleet is fixed, which
is the fastest a SimPy model of this fleet gets, so the comparison flatters SimPy.
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
    waits = np.zeros(len(arrival))

    def request(k: int, svc: float) -> Generator[Any, Any, None]:
        arrived = env.now
        with slots.request() as grant:
            yield grant
            waits[k] = env.now - arrived
            yield env.timeout(svc)

    def source() -> Generator[Any, Any, None]:
        previous = 0.0
        for k, (a, s) in enumerate(zip(arrival.tolist(), service.tolist(), strict=True)):
            yield env.timeout(a - previous)
            previous = a
            env.process(request(k, s))

    env.process(source())
    env.run()
    return waits
