"""systemd's readiness protocol (``sd_notify``), spoken without libsystemd.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the
abstract namespace) and waits for ``READY=1`` before it calls the unit started; with
``WatchdogSec=`` it also passes ``WATCHDOG_USEC`` and kills the service when no ``WATCHDOG=1``
arrives within it. The daemon says:

- ``READY=1`` after its first completed tick (queues sampled, fleet described, pools decided),
  so ``systemctl start`` returns when the autoscaler actually works, not when Python started;
- ``WATCHDOG=1`` after every tick: a control loop stuck in a tick stops the pings and systemd
  restarts the service (``Restart=on-failure``);
- ``STATUS=...`` one line per tick for ``systemctl status``;
- ``STOPPING=1`` with ``EXTEND_TIMEOUT_USEC`` covering ``drain_timeout`` when a stop begins, so the
  unit's stop timeout follows the config's drain rather than a fixed number in the unit file.

A message is one datagram of ``KEY=value`` lines. Sending never raises and never blocks the loop
(a non-blocking socket; a full or vanished socket drops the message): readiness reporting must
not be a way for the daemon to fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence

import structlog

from autoscaler.runtime.loop import PoolTick

log = structlog.get_logger("autoscaler.runtime")


def socket_address(value: str) -> str | bytes:
    """``NOTIFY_SOCKET`` as ``socket.sendto`` wants it: ``@name`` is the abstract namespace
    (a leading NUL byte), anything else a filesystem path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends ``sd_notify`` messages to ``NOTIFY_SOCKET``; a no-op when it is not set."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self._warned = False
        self.ready = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=value`` lines; True when it was handed to the socket."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto("\n".join(fields).encode(), socket_address(self.address))
        except OSError as exc:
            if not self._warned:  # once: systemd gone or the socket full; keep running
                self._warned = True
                log.warning("sd_notify_failed", socket=self.address, error=str(exc))
            return False
        return True

    def on_tick(self, results: Sequence[PoolTick]) -> None:
        """After each tick: ``READY=1`` the first time, then ``WATCHDOG=1`` and a status line."""
        if self.address is None:
            return
        status = f"STATUS={tick_status(results)}"
        if not self.ready:
            self.ready = self.send("READY=1", status)
        self.send("WATCHDOG=1", status)

    def stopping(self, drain_timeout_s: float, grace_s: float) -> None:
        """``STOPPING=1`` and a stop timeout of at least the drain plus ``grace_s``."""
        usec = int((drain_timeout_s + grace_s) * 1_000_000)
        self.send("STOPPING=1", f"EXTEND_TIMEOUT_USEC={usec}",
                  f"STATUS=draining (drain_timeout {drain_timeout_s:g}s)")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """``WATCHDOG_USEC`` in seconds when the watchdog is meant for this process (systemd sets
    ``WATCHDOG_PID`` to the main PID; a forked child must not ping for its parent)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 1_000_000


def tick_status(results: Sequence[PoolTick]) -> str:
    """One line for ``systemctl status``: pools decided, instances wanted, pools failing."""
    decided = [r for r in results if r.decision is not None]
    desired = sum(r.decision.desired for r in decided if r.decision is not None)
    failing = sorted(r.pool for r in results if r.errors)
    line = f"{len(decided)}/{len(results)} pools decided, {desired} instances desired"
    if failing:
        shown = ", ".join(failing[:3]) + (" ..." if len(failing) > 3 else "")
        line += f"; errors in {shown}"
    return line
