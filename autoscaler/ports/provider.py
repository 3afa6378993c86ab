"""The provider contract: what an adapter for a cloud (or ``local``) implements.

A provider *kind* (``local``, later ``aws``, ``gcp``, ``azure``, ``kubernetes``) is registered
under the entry-point group ``autoscaler.providers``. It declares:

- ``AccountSettings``: a pydantic model for one named account under the config's top-level
  ``providers:`` map (region, project, credentials file, endpoint override...);
- ``GroupSettings``: a pydantic model for the kind's keys on a group (``asg``, ``mig`` +
  ``zone``, ``command``...);
- ``check_group(group, account)``: pure, no I/O; everything ``run`` would refuse about a group
  that its settings model alone cannot see (``validate`` runs it too);
- ``client(account, groups, clock)``: ONE client per account, shared by every group of every
  pool on that account, so a cloud that describes 100 groups per call is called once.

The account client (``AccountClient``):

- ``start()`` connects; raising makes the daemon skip that account's pools and retry later,
  the other accounts run on.
- ``describe(groups)`` returns every asked group's ``GroupState`` (meanings in
  ``autoscaler.core.model.GroupState``) or the ``ProviderError`` for that group, in as few
  API calls as the API allows. A failure of the whole call may be raised instead.
- ``resize(group, target, request_id)`` sets the group's desired size to the absolute
  ``target``. Idempotent: the same target twice is one change. ``request_id`` is the same for
  retries of one actuation (pass it where the API has an idempotency key). It returns once
  the cloud ACCEPTED the new size, never waiting for instances to boot. The daemon never
  cancels it midway, so an adapter need not be cancellation-safe inside a call.
- ``close(drain_timeout_s)`` releases connections (``local`` stops its instances).

Synchronous SDKs run in the client's own ``AccountExecutor`` (one small thread pool per
account), never in the event loop and never in asyncio's shared default executor, so a slow
cloud cannot starve another account's calls.

Errors: adapters raise only the classes of ``autoscaler.ports.errors``, mapped from their SDK's
errors once, with ``from``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)

__all__ = [
    "AccountClient",
    "AccountExecutor",
    "AccountSpec",
    "CapacityUnavailable",
    "Conflict",
    "Denied",
    "GroupId",
    "ManagedGroup",
    "NotFound",
    "ProviderError",
    "ProviderKind",
    "Throttled",
    "Transient",
]

P = ParamSpec("P")
R = TypeVar("R")


class GroupId(NamedTuple):
    """A group is named within its pool: two pools may each have a group called ``spot``."""

    pool: str
    group: str

    def __str__(self) -> str:
        return f"{self.pool}/{self.group}"


@dataclass(frozen=True, slots=True)
class ManagedGroup:
    """What a provider needs to know about one group: its identity, its kind's settings and
    the few pool facts that the ``local`` kind uses to emulate instances (other kinds ignore
    them: a cloud's instances boot as they boot). The allocator's view of a group is another
    value, ``autoscaler.core.specs.GroupSpec``: prices and bounds, no settings."""

    id: GroupId
    market: Market
    settings: BaseModel
    queue_kind: str = ""
    queue_settings: BaseModel | None = None
    slots_per_instance: int = 1
    boot_time_s: float = 0.0
    boot_time_spread_s: float = 0.0

    @property
    def name(self) -> str:
        return self.id.group


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One named account: its kind's validated settings and the per-call deadlines."""

    name: str
    kind: str
    settings: BaseModel
    describe_timeout_s: float = 10.0
    resize_timeout_s: float = 30.0


class AccountClient(Protocol):
    async def start(self) -> None: ...

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]: ...

    async def resize(self, group: GroupId, target: int, request_id: str) -> None: ...

    async def close(self, drain_timeout_s: float) -> None: ...


class ProviderKind(Protocol):
    """The object an ``autoscaler.providers`` entry point names (a class with classmethods)."""

    kind: ClassVar[str]
    AccountSettings: ClassVar[type[BaseModel]]
    GroupSettings: ClassVar[type[BaseModel]]

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        """``(field, message)`` for each problem ``run`` would refuse; ``field`` is a key of
        the group ('' for the group as a whole). Pure: no I/O, no clock."""
        ...

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> AccountClient: ...


class AccountExecutor:
    """A small thread pool owned by one account client, for synchronous SDKs.

    ``await executor.run(fn, *args)`` runs ``fn`` in a thread. A call that the daemon stops
    waiting for keeps its thread until it returns (threads cannot be cancelled): size
    ``max_workers`` for the calls one account makes at once.
    """

    def __init__(self, name: str, max_workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        """Refuse new calls; calls already running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def missing_extra(what: str, extra: str, modules: Sequence[str]) -> str | None:
    """Why ``what`` cannot run here (the modules missing and the extra to install), or None.

    Looks the modules up without importing them: cloud SDKs take seconds to import, and config
    validation (``validate``, the simulator) must refuse what ``run`` would refuse cheaply."""
    missing = [m for m in modules if not _findable(m)]
    if not missing:
        return None
    return f"{what} needs {', '.join(missing)}: pip install 'queue-autoscaler[{extra}]'"


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # a parent package that is not one
        return False
