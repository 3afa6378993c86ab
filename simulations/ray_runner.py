"""The same sweep jobs as Ray tasks (``autoscaler plan --ray ADDRESS``).

Each trace is loaded here once (per seed for rate series) and put in the object store once;
tasks receive it by reference, so a cluster's workers fetch it once per node rather than once
per job. A task runs ``jobs.execute``, the very function a local worker runs, so results are
identical. ``auto`` starts a local Ray instance for the run (and stops it after); any other
address joins that cluster (``ray://host:10001`` or ``host:6379``), whose nodes need this
package installed at the same version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autoscaler.simulations.jobs import Job, execute, load_variant


class RayUnavailable(RuntimeError):
    """``--ray`` without the ``ray`` extra installed."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "--ray needs Ray: pip install 'queue-autoscaler[ray]'") from None
    return ray


def _task(job: Job, trace: Any) -> dict[str, Any]:
    return execute(job, trace)


def run_on_ray(jobs: Sequence[Job], address: str,
               finished: Callable[[int, dict[str, Any]], None]) -> None:
    """Run ``jobs`` as Ray tasks; ``finished(index, fields)`` as each one completes."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        if address == "auto":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        refs: dict[tuple[str, int], Any] = {}
        for job in jobs:
            variant = job.trace.variant(job.seed)
            if variant not in refs:
                refs[variant] = ray.put(load_variant(job.trace, job.seed, job.config_text))
        remote = ray.remote(num_cpus=1)(_task)
        pending = {remote.remote(job, refs[job.trace.variant(job.seed)]): k
                   for k, job in enumerate(jobs)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                finished(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()
