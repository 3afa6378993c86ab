"""azure-core's exceptions → the product's error tree, once, at the adapter's edge.

Imports no SDK module at import time: the classes are looked up by the exception's own type
hierarchy (``azure.core.exceptions``), imported only when an error is being mapped.

=================================================  ==========================================
429 (whatever its code)                            ``Throttled`` with ``Retry-After`` (seconds or
                                                   an HTTP date)
code in ``CAPACITY_CODES`` (any status), or a      ``CapacityUnavailable``
quota code whose message names a quota
401, 403, a credential that cannot get a token     ``Denied``
404                                                ``NotFound``
409, 412                                           ``Conflict``
5xx, connection and read failures, timeouts        ``Transient``
other 4xx                                          ``ProviderError`` (unclassified)
=================================================  ==========================================

Messages carry the HTTP status, the ARM error code and Azure's message, never a header or a
token (the bearer token lives only in the SDK's request headers).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.providers.azure.states import is_capacity_failure

MAX_MESSAGE = 300


def retry_after_s(headers: Any) -> float | None:
    """``Retry-After`` as seconds (``None`` when absent or unreadable)."""
    if headers is None:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _code_and_message(exc: Any) -> tuple[str, str]:
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", None) or "")
    message = str(getattr(error, "message", None) or "")
    if not message:
        message = str(getattr(exc, "reason", None) or "") or type(exc).__name__
    return code, " ".join(message.split())[:MAX_MESSAGE]


def map_error(exc: BaseException, *, account: str, group: str, operation: str) -> ProviderError:
    """The one class of the tree for ``exc`` (raise it ``from exc``)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = {"account": account, "group": group, "operation": operation}
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code, message = _code_and_message(exc)
        text = f"HTTP {status} {code}: {message}" if code else f"HTTP {status}: {message}"
        if status == 429:  # first: ARM throttles with code OperationNotAllowed too
            response = getattr(exc, "response", None)
            return Throttled(text, retry_after_s=retry_after_s(getattr(response, "headers", None)),
                             **where)
        if is_capacity_failure(code, message):
            return CapacityUnavailable(text, **where)
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            return Denied(text, **where)
        if status == 404:
            return NotFound(text, **where)
        if status in (409, 412):
            return Conflict(text, **where)
        if status >= 500:
            return Transient(text, **where)
        return ProviderError(text, **where)
    if isinstance(exc, ClientAuthenticationError):  # a credential that got no token
        return Denied(f"no token: {_code_and_message(exc)[1]}", **where)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError,
                        ConnectionError)):
        return Transient(f"{type(exc).__name__}: {' '.join(str(exc).split())[:MAX_MESSAGE]}",
                         **where)
    return ProviderError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:MAX_MESSAGE]}",
                         **where)
