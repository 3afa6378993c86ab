"""The ``local`` kind's settings and the check ``run`` and ``validate`` share: plain pydantic
models, imported by both the kind (config validation) and the client (the daemon)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.ports.provider import ManagedGroup

OutputMode = Literal["log", "discard", "inherit"]
"""Where instances' stdout/stderr go (see ``autoscaler.providers.local.output``)."""


class LocalAccountSettings(BaseModel):
    """The implicit ``local`` account has no settings; an explicit one may exist by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalSettings(BaseModel):
    """The keys of a local group (``GroupSettings`` of the kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] | None = Field(
        default=None, min_length=1, description="argv of one instance (no shell)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="added to the environment")
    output: OutputMode = Field(
        default="log",
        description="instances' stdout/stderr: log (one instance_output event per line), "
        "discard, or inherit (the daemon's own descriptors: corrupts a JSON log)",
    )



def group_problems(group: ManagedGroup) -> list[tuple[str, str]]:
    """``(field, message)`` for what a local group cannot run with: instances of a pool on a
    real queue are processes, so they need a ``command``."""
    settings = group.settings
    if not isinstance(settings, LocalSettings):
        return [("", "local provider settings expected")]
    if settings.command is None and group.queue_kind != "memory":
        return [("command", "the local provider needs a `command` unless the pool's queue "
                            f"kind is memory (it is {group.queue_kind!r})")]
    return [("command", m) for m in _command_disagreements(settings.command or (), group)]


_QUEUE_FLAGS = {"--kind": "kind", "--key": "key", "--group": "group"}
"""Flags of ``autoscaler worker`` (and workers built like it) that name the queue served."""


def _command_disagreements(command: tuple[str, ...], group: ManagedGroup) -> list[str]:
    """A command that names a queue (``--kind``, ``--key``, ``--group``, as ``--key X`` or
    ``--key=X``) must name its pool's: otherwise the daemon scales one queue's workers by
    another queue's wait. A command that names nothing, or agrees, is not judged; ``--url`` is
    not compared (the same server has many spellings)."""
    pool_values = {
        "kind": group.queue_kind,
        "key": getattr(group.queue_settings, "key", None),
        "group": getattr(group.queue_settings, "group", None),
    }
    problems = []
    for i, arg in enumerate(command):
        flag, eq, value = arg.partition("=")
        if flag not in _QUEUE_FLAGS:
            continue
        if not eq:
            if i + 1 >= len(command):
                continue
            value = command[i + 1]
        field = _QUEUE_FLAGS[flag]
        expected = pool_values[field]
        if expected is not None and value != str(expected):
            problems.append(
                f"the command's {flag} {value!r} is not the pool's queue {field} {expected!r}"
            )
    return problems
