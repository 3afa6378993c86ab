"""One ``AccountRuntime`` per provider account: its client, its start-up and its describes.

A client whose ``start()`` raises does not stop the daemon: that account's groups describe as
``Transient("account not started")`` (their pools are skipped with a clear log) and the start is
retried with exponential backoff, in the background, so the tick never waits for it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence

import structlog

from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import ProviderError, Transient, error_kind
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId

log = structlog.get_logger("autoscaler.runtime")

START_RETRY_BASE_S = 5.0
START_RETRY_CAP_S = 300.0


class AccountRuntime:
    def __init__(
        self, spec: AccountSpec, client: AccountClient, groups: Sequence[GroupId], clock: Clock
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.client = client
        self.groups = tuple(groups)
        self._clock = clock
        self._rng = random.Random(spec.name)
        self.started = False
        self.start_error: str = ""
        self._failures = 0
        self._retry_at = 0.0
        self._starting: asyncio.Task[None] | None = None
        self._attempted = False

    def ready(self) -> AccountClient | None:
        """The client once started, else None (the actuators wait for it)."""
        return self.client if self.started else None

    async def start(self) -> None:
        """One start attempt, within the describe deadline (a start only connects: giving up
        on it is safe); failures are logged and scheduled for a retry, never raised."""
        self._attempted = True
        try:
            await asyncio.wait_for(self.client.start(), self.spec.describe_timeout_s)
        except Exception as exc:  # any adapter failure: that account waits, the others run
            self._failures += 1
            delay = min(START_RETRY_CAP_S, START_RETRY_BASE_S * 2 ** (self._failures - 1))
            delay *= self._rng.uniform(0.5, 1.0)
            self._retry_at = self._clock.monotonic() + delay
            self.start_error = str(exc) or repr(exc)
            log.error("account_start_failed", account=self.name, kind=self.spec.kind,
                      error_class=error_kind(exc), error=self.start_error,
                      retry_in_s=round(delay, 1), groups=[str(g) for g in self.groups])
            return
        if self._failures:
            log.info("account_started", account=self.name, after_failures=self._failures)
        self.started, self.start_error, self._failures = True, "", 0

    def retry_start_if_due(self) -> None:
        """Start again in the background when the backoff has passed."""
        if self.started or self._clock.monotonic() < self._retry_at:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self.start(), name=f"start:{self.name}")

    async def describe(self) -> Mapping[GroupId, GroupState | ProviderError]:
        """Every group of the account, in one client call, within the account's deadline.

        A describe is a read: abandoning it at the deadline is safe (unlike a resize)."""
        if not self._attempted:
            await self.start()  # a loop ticked without ``Daemon.start``: the first attempt
        if not self.started:
            self.retry_start_if_due()
            error = Transient(f"account not started: {self.start_error or 'starting'}",
                              account=self.name, operation="start")
            return dict.fromkeys(self.groups, error)
        try:
            result = await asyncio.wait_for(
                self.client.describe(self.groups), self.spec.describe_timeout_s
            )
        except ProviderError as exc:
            return dict.fromkeys(self.groups, exc)
        except TimeoutError:
            error = Transient(f"no answer within {self.spec.describe_timeout_s:g}s",
                              account=self.name, operation="describe")
            return dict.fromkeys(self.groups, error)
        except Exception as exc:  # an adapter bug must not stop the other accounts
            log.error("describe_failed", account=self.name, error=repr(exc), exc_info=exc)
            return dict.fromkeys(self.groups, Transient(repr(exc), account=self.name,
                                                        operation="describe"))
        missing = Transient("the provider did not describe this group", account=self.name,
                            operation="describe")
        return {g: result.get(g, missing) for g in self.groups}

    async def close(self, drain_timeout_s: float) -> list[str]:
        """Close the client; what it could not stop cleanly: the instances it had to kill at
        the deadline (a client that says so with a ``killed_instances`` attribute, as the local
        one does) or the account itself when ``close`` failed. Empty when the stop was clean;
        a client without the attribute is taken at its word."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        try:
            await self.client.close(drain_timeout_s)
        except Exception as exc:
            log.error("provider_close_failed", account=self.name, error=repr(exc))
            return [f"account {self.name}: close failed"]
        killed = getattr(self.client, "killed_instances", None)
        return [str(k) for k in killed] if isinstance(killed, list) else []
