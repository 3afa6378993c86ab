"""``local``: each instance is one OS process started from the group's ``command``.

Made for a single machine (a workstation with GPUs, the demo, end-to-end tests). It follows the
provider contract of ``autoscaler.ports.provider`` (one client for the implicit ``local``
account, serving every local group of every pool). Semantics that matter to the daemon:

- An instance counts as *booting* until ``capacity.boot_time`` has passed on the injected clock,
  then *running*.
- Scale-in sends SIGTERM; the worker finishes its in-flight request and exits, so scale-in never
  loses a request. Until it exits the instance is reported as *draining*: not running, not part
  of ``desired``.
- Victims follow the product's one order, ``autoscaler.core.model.scale_in_key``: booting
  first, then newest.
- ``desired`` is the number of live (non-draining) instances: one that dies unexpectedly is logged
  as ``instance_exited`` and lowers it, so the next tick's decision resizes and replaces it.
  ``pending`` is always 0: a local launch either starts a process or fails at once.
- A launch that fails (the program is missing) raises ``CapacityUnavailable`` and the group
  reports itself unavailable, with the reason, for ``LAUNCH_RETRY_S``.
- Each instance gets ``AUTOSCALER_INSTANCE`` (its number) and ``AUTOSCALER_SLOTS`` (the pool's
  ``capacity.slots_per_instance``, which ``autoscaler worker`` reads as its ``--slots``) in its
  environment, after the group's ``env``: the instance serves the capacity the pool models.
- ``output: log`` (the default): each instance's stdout and stderr are read line by line and
  logged as ``instance_output`` events (``autoscaler.providers.local.output``), so the daemon's
  JSON log stays one object per line. ``discard`` drops them; ``inherit`` hands the instances
  the daemon's own stdout/stderr, which interleaves their bytes with the JSON log: unsafe
  unless the log is read by a human.
- On Linux, instances are started through ``setpriv --pdeathsig TERM`` (util-linux) when it is
  installed: if the daemon itself dies (SIGKILL, OOM), its instances get SIGTERM and drain
  instead of serving on as orphans that a restarted daemon cannot see and would double.
  Without ``setpriv`` a warning says so when the provider starts.

A pool whose queue kind is ``memory`` may omit ``command``: instances are then in-process asyncio
workers consuming that memory queue, with the same booting and draining semantics (the embedded
default of ``autoscaler demo``).
"""

from autoscaler.providers.local.kind import LocalProvider
from autoscaler.providers.local.settings import LocalAccountSettings, LocalSettings

__all__ = ["LocalAccountSettings", "LocalProvider", "LocalSettings"]
