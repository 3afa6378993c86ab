"""SDK errors to the product's error tree, once, at this adapter's edge.

``google.api_core.exceptions`` carries the HTTP status (REST transport) and the Compute
error ``reason``; an operation that finished with errors carries Compute error codes.
Messages keep the API's own text (it names the resource, never a credential) and the original
exception is chained with ``from`` by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.providers.gcp.state import is_capacity_code

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
CONFLICT_CODES = frozenset({"RESOURCE_NOT_READY", "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
                            "CONDITION_NOT_MET", "RESOURCE_OPERATION_RATE_EXCEEDED"})


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Google APIs; the backoff applies instead


def _reasons(exc: BaseException) -> set[str]:
    found = {getattr(exc, "reason", None) or ""}
    for item in getattr(exc, "errors", ()) or ():
        if isinstance(item, dict):
            found.add(str(item.get("reason", "")))
    return found - {""}


def map_api_error(exc: BaseException, *, account: str, group: str,
                  operation: str) -> ProviderError:
    """One class of the tree for an exception raised by a google-cloud-compute call."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests import exceptions as http_exc

    where = {"account": account, "group": group, "operation": operation}
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, gexc.TooManyRequests | gexc.ResourceExhausted) or (
        isinstance(exc, gexc.Forbidden) and _reasons(exc) & RATE_REASONS
    ):
        return Throttled(message, retry_after_s=_retry_after(exc), **where)
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied | gexc.Unauthorized
                  | gexc.Unauthenticated):
        return Denied(message, **where)
    if isinstance(exc, gexc.NotFound):
        return NotFound(message, **where)
    if isinstance(exc, gexc.Conflict | gexc.PreconditionFailed | gexc.Aborted):
        return Conflict(message, **where)
    if isinstance(exc, gexc.ServerError | gexc.ServiceUnavailable | gexc.DeadlineExceeded
                  | gexc.RetryError):
        return Transient(message, **where)
    if isinstance(exc, auth_exc.RefreshError) and getattr(exc, "retryable", False):
        # google-auth marks a refresh that may pass (a metadata server or STS hiccup).
        return Transient(f"credentials refresh failed, retryable ({type(exc).__name__})",
                         **where)
    if isinstance(exc, auth_exc.DefaultCredentialsError | auth_exc.RefreshError):
        # Their text names files and endpoints, not secrets; the class is what matters.
        return Denied(f"credentials unusable ({type(exc).__name__}): {exc}", **where)
    if isinstance(exc, auth_exc.TransportError | http_exc.ConnectionError
                  | http_exc.Timeout | ConnectionError | TimeoutError):
        return Transient(f"{type(exc).__name__}: {exc}", **where)
    if isinstance(exc, gexc.GoogleAPICallError):
        return ProviderError(message, **where)  # 400 and the like: not classified
    return ProviderError(f"{type(exc).__name__}: {exc}", **where)


def map_operation_errors(errors: Sequence[tuple[str, str]], *, account: str, group: str,
                         operation: str) -> ProviderError:
    """The class for a Compute operation that finished with ``error.errors``."""
    where = {"account": account, "group": group, "operation": operation}
    codes = [code for code, _ in errors]
    text = "; ".join(f"{code}: {message}" for code, message in errors) or "operation failed"
    if any(is_capacity_code(c) for c in codes):
        return CapacityUnavailable(f"capacity unavailable: {text}", **where)
    if any(c in RATE_REASONS for c in codes):
        return Throttled(text, account=account, group=group, operation=operation)
    if any(c in CONFLICT_CODES for c in codes):
        return Conflict(text, **where)
    if any(c in ("RESOURCE_NOT_FOUND", "NOT_FOUND") for c in codes):
        return NotFound(text, **where)
    if any(c in ("PERMISSIONS_ERROR", "FORBIDDEN") for c in codes):
        return Denied(text, **where)
    return Transient(text, **where)
