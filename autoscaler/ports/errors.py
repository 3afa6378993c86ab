"""One error tree for the whole product, mapped once at the edge.

Each adapter turns its SDK's failure into exactly one class of this tree, chained with ``from``
so the original error (status code, request id) stays in the traceback; everything past the
adapter branches on the class only (kopf's ``_cogs/clients/errors.py`` does the same with
HTTP statuses). What the daemon does with each provider error:

====================== ==========================================================================
``Throttled``          back off, at least ``retry_after_s`` when the API said so, then retry
``CapacityUnavailable`` mark the group unavailable with the reason; the allocator moves the
                       shortfall to the next group (spot → on-demand); no retry of that target
``Denied``             long backoff, logged once per change: credentials/permissions need a human
``NotFound``           same as ``Denied``: the group named in the config does not exist
``Conflict``           retried with backoff (another writer, an operation already in progress)
``Transient``          retried with backoff (5xx, connection reset, timeouts)
====================== ==========================================================================

A plain ``ProviderError`` (an adapter that could not classify) is treated as ``Transient``.
"""

from __future__ import annotations

from typing import ClassVar


class AutoscalerError(Exception):
    """Root of every error this product raises on purpose."""


class ConfigError(AutoscalerError):
    """The configuration is invalid or cannot be wired (names the file, line and field)."""


class SourceError(AutoscalerError):
    """A queue source could not be sampled."""


class ProviderError(AutoscalerError):
    """A provider call failed. ``account``, ``group`` and ``operation`` say where.

    ``kind`` is the short class label used in logs and metrics (``throttled``, ``denied``...);
    ``retryable`` says whether the same call may succeed if simply repeated soon.
    """

    kind: ClassVar[str] = "provider_error"
    retryable: ClassVar[bool] = True

    def __init__(
        self, message: str, *, account: str = "", group: str = "", operation: str = ""
    ) -> None:
        where = " ".join(
            part for part in (
                f"account {account!r}" if account else "",
                f"group {group!r}" if group else "",
                f"{operation}:" if operation else "",
            ) if part
        )
        super().__init__(f"{where} {message}" if where else message)
        self.message = message
        self.account = account
        self.group = group
        self.operation = operation


class Throttled(ProviderError):
    """The API rate-limited us; ``retry_after_s`` is its hint (None: it gave none)."""

    kind = "throttled"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        account: str = "",
        group: str = "",
        operation: str = "",
    ) -> None:
        super().__init__(message, account=account, group=group, operation=operation)
        self.retry_after_s = retry_after_s


class CapacityUnavailable(ProviderError):
    """The cloud cannot launch instances here now (spot stockout, zone exhausted, quota)."""

    kind = "capacity_unavailable"
    retryable = False


class Denied(ProviderError):
    """Credentials missing or lacking a permission. Retrying soon will not help."""

    kind = "denied"
    retryable = False


class NotFound(ProviderError):
    """The group (or the account's project/subscription) does not exist."""

    kind = "not_found"
    retryable = False


class Conflict(ProviderError):
    """Another operation on the group is in progress, or our view of it is stale."""

    kind = "conflict"


class Transient(ProviderError):
    """A failure expected to pass: 5xx, connection reset, a timeout inside the SDK."""

    kind = "transient"


def error_kind(exc: BaseException) -> str:
    """The label for logs and metrics: the tree's ``kind``, or ``unexpected`` for an adapter
    bug (any exception outside the tree)."""
    return exc.kind if isinstance(exc, ProviderError) else "unexpected"
