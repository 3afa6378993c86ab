"""Child processes' stdout and stderr as structlog events, so a child never corrupts the JSON log.

Why: an instance that inherits the daemon's stderr writes into the file the daemon's JSON log
goes to; the two interleave and split each other's lines (measured: 1,052 of 1,096 lines of a
demo log were not JSON, some ``{...}{...}``). Here every line a child writes becomes one event,
``instance_output``, with ``group``, ``instance``, ``pid``, ``stream`` (``stdout`` or
``stderr``) and ``line`` (decoded as UTF-8, undecodable bytes replaced), rendered by the
daemon's own logger, so each log line stays one JSON object.

Level: a child line that is itself a JSON object with a ``level`` field (``autoscaler worker``
logs that way) is re-emitted at that level, so the daemon's ``log_level`` filters its children
as it filters itself and a child's errors stay visible at ``warning``; any other line is
``info``.

Bounds and what is not guaranteed: a line longer than ``MAX_LINE_BYTES`` is cut there
(``truncated: true``) and the rest of it, up to the next newline, is dropped; a final line
without a newline is emitted at end of file. Reading is asyncio stream reads, so it never
blocks the event loop; a child that writes faster than the daemon logs is slowed by its own
full pipe (back-pressure on the child, not on the daemon). The order between a child's stdout
and stderr lines (two readers) and between its lines and the daemon's events about it (e.g.
``instance_stopped``) is not preserved.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from autoscaler.providers.local.settings import OutputMode

MAX_LINE_BYTES = 8192
READ_CHUNK_BYTES = 65536
DRAIN_GRACE_S = 2.0
"""How long, after a child exited, its output is still read: a grandchild that kept the pipe
open would otherwise hold the reader forever."""

_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning",
           "error": "error", "critical": "critical", "exception": "error"}

log = structlog.get_logger("autoscaler.providers.local.output")


class LineSplitter:
    """Cuts a byte stream into lines of at most ``max_bytes`` (newline and a trailing CR
    removed); ``(line, truncated)`` pairs, in order."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._dropping = False  # the current line was emitted truncated: skip to its end

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        lines: list[tuple[bytes, bool]] = []
        start = 0
        while start <= len(chunk):
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            if not self._dropping:
                room = self.max_bytes - len(self._buffer)
                self._buffer += chunk[start:min(end, start + room)]
                if end - start > room:
                    lines.append((bytes(self._buffer), True))
                    self._buffer.clear()
                    self._dropping = True
            if newline < 0:
                break
            if self._dropping:
                self._dropping = False
            else:
                lines.append((_strip_cr(self._buffer), False))
                self._buffer.clear()
            start = newline + 1
        return lines

    def flush(self) -> list[tuple[bytes, bool]]:
        """The last line if it had no newline."""
        rest = [] if self._dropping or not self._buffer else [(_strip_cr(self._buffer), False)]
        self._buffer.clear()
        self._dropping = False
        return rest


def _strip_cr(line: bytearray) -> bytes:
    return bytes(line[:-1] if line.endswith(b"\r") else line)


def child_level(text: str) -> str:
    """The level a child's line is logged at: its own ``level`` if it is a JSON object that
    has a known one, else ``info``."""
    if not text.startswith("{"):
        return "info"
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return "info"
    level = record.get("level") if isinstance(record, dict) else None
    return _LEVELS.get(level, "info") if isinstance(level, str) else "info"


def emit_line(line: bytes, truncated: bool, **fields: object) -> None:
    """One ``instance_output`` event for one line of a child."""
    text = line.decode("utf-8", errors="replace")
    method = getattr(log, child_level(text))
    if truncated:
        method("instance_output", line=text, truncated=True, **fields)
    else:
        method("instance_output", line=text, **fields)


async def forward(reader: asyncio.StreamReader, fields: dict[str, object],
                  max_bytes: int = MAX_LINE_BYTES) -> None:
    """Log every line of ``reader``, with ``fields``, until end of file (see the module
    docstring)."""
    splitter = LineSplitter(max_bytes)
    while chunk := await reader.read(READ_CHUNK_BYTES):
        for line, truncated in splitter.feed(chunk):
            emit_line(line, truncated, **fields)
    for line, truncated in splitter.flush():
        emit_line(line, truncated, **fields)


def pipes(mode: OutputMode) -> int | None:
    """The ``stdout``/``stderr`` argument of ``create_subprocess_exec`` for ``mode``."""
    if mode == "log":
        return asyncio.subprocess.PIPE
    if mode == "discard":
        return asyncio.subprocess.DEVNULL
    return None  # inherit: the daemon's own descriptors (unsafe for a JSON log)


def start_forwarding(process: asyncio.subprocess.Process, **fields: object
                     ) -> list[asyncio.Task[None]]:
    """One reader task per piped stream of ``process`` (none unless started with ``pipes``
    of ``log``)."""
    tasks = []
    for name, reader in (("stdout", process.stdout), ("stderr", process.stderr)):
        if reader is not None:
            tasks.append(asyncio.create_task(
                forward(reader, {**fields, "pid": process.pid, "stream": name}),
                name=f"output:{process.pid}:{name}",
            ))
    return tasks


async def finish_forwarding(tasks: list[asyncio.Task[None]],
                            grace_s: float = DRAIN_GRACE_S) -> None:
    """After the child exited: let its readers reach end of file, within ``grace_s``."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            log.warning("instance_output_failed", error=repr(result))
