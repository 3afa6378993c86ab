"""Real redis-server topologies for the URL-form tests: a unix socket, a Sentinel-watched master
with a replica, a three-node cluster. Loopback and temporary directories only."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from autoscaler.testing import free_port, stop_process

BINARY = shutil.which("redis-server") or "redis-server"


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None,
               timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def server(*args: str, port: int | None = None, unix: Path | None = None,
           config: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """One redis-server (or sentinel, with ``config``) in its own scratch directory."""
    workdir = Path(tempfile.mkdtemp(prefix="autoscaler-topo-"))
    argv = [BINARY]
    if config is not None:
        conf = workdir / "node.conf"
        conf.write_text(config)
        argv.append(str(conf))
    argv += ["--bind", "127.0.0.1", "--port", str(port or 0), "--save", "", "--appendonly",
             "no", "--dir", str(workdir), *args]
    if unix is not None:
        argv += ["--unixsocket", str(unix), "--unixsocketperm", "700"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if port:
            wait_until(lambda: port_open(port), f"redis on {port}", proc)
        if unix is not None:
            wait_until(unix.exists, f"redis on {unix}", proc)
        yield proc
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def sentinel_pair(master_name: str = "gpu") -> Iterator[tuple[int, int, int, ExitStack]]:
    """A master, its replica and one Sentinel (quorum 1); yields their ports and the stack
    that owns the processes (a test may stop the master early with ``stack``)."""
    master, replica, sentinel = free_port(), free_port(), free_port()
    with ExitStack() as stack:
        stack.enter_context(server(port=master))
        stack.enter_context(server("--replicaof", "127.0.0.1", str(master), port=replica))
        conf = (f"sentinel monitor {master_name} 127.0.0.1 {master} 1\n"
                f"sentinel down-after-milliseconds {master_name} 500\n"
                f"sentinel failover-timeout {master_name} 3000\n")
        stack.enter_context(server("--sentinel", port=sentinel, config=conf))
        yield master, replica, sentinel, stack


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 50000)
        if not port_open(port) and not port_open(port + 10000) and _bindable(port) \
                and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def cluster(nodes: int = 3) -> Iterator[list[int]]:
    """``nodes`` masters with ``--cluster-enabled yes``, joined by ``redis-cli --cluster
    create`` (no replicas); yields their ports once every slot is served."""
    ports = [cluster_port() for _ in range(nodes)]
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(server("--cluster-enabled", "yes", "--cluster-config-file",
                                       "nodes.conf", "--cluster-node-timeout", "2000",
                                       port=port))
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        )

        def served() -> bool:
            out = subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"],
                                 capture_output=True, text=True, timeout=5).stdout
            return "cluster_state:ok" in out
        wait_until(served, "the cluster")
        yield ports
