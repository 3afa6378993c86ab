"""Helpers for tests and benchmarks that need real servers (shipped like ``structlog.testing``).

For provider plugin authors: ``autoscaler.testing.fakes`` (an in-memory provider kind with
injectable errors, delays and capacity shortfalls) and ``autoscaler.testing.conformance`` (the
suite every provider must pass). Nothing in the daemon imports this package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServerStartError(RuntimeError):
    """A test server that is missing or did not come up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server(timeout_s: float = 10.0) -> Iterator[str]:
    """A private, non-persistent redis-server bound to 127.0.0.1 on a free port.

    Yields its base URL (``redis://127.0.0.1:PORT``, no database). The server and its scratch
    directory are removed on exit.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerStartError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="autoscaler-redis-")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir, "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerStartError(
                        f"redis-server did not start on 127.0.0.1:{port}"
                    ) from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


COMPILED_PACKAGES = ("simulations",)


def stale_compiled_modules(root: Path) -> list[str]:
    """Compiled modules under ``root``'s packages that are older than their source.

    An extension module runs the ``.c`` it was built from, so after an edit without a rebuild
    the tests would run yesterday's code and pass.
    """
    stale = []
    for package in COMPILED_PACKAGES:
        for built in sorted((root / package).rglob("*.so")):
            stem = built.name.split(".", 1)[0]
            built_at = built.stat().st_mtime
            source = built.with_name(f"{stem}.c")
            if source.exists() and source.stat().st_mtime > built_at:
                stale.append(f"{source.relative_to(root)} is newer than {built.name}")
    return stale
