"""Kubernetes API failures → the product's error tree, in one place (kopf's ``check_response``).

The API answers errors as a ``Status`` object (``{"kind": "Status", "code": 409, "reason":
"Conflict", "message": "..."}``); kubernetes-asyncio raises ``ApiException`` with the HTTP status,
the headers and that body. Our message carries the status code and the ``Status.message`` only:
never ``str(ApiException)``, which prints every response header.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from autoscaler.ports.errors import (
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)


def status_message(body: object) -> str:
    """``Status.message`` from an error body, or a short excerpt of a body that is not one."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:500]
    return body[:200]


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The ``Retry-After`` header in seconds (the API server sends delta-seconds)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def map_error(exc: BaseException, *, account: str, group: str, operation: str) -> ProviderError:
    """The one class of our tree for a failure of a Kubernetes API call, chained to it (also
    when a describe returns the error for its group instead of raising it)."""
    error = _classify(exc, account=account, group=group, operation=operation)
    error.__cause__ = exc
    return error


def _classify(exc: BaseException, *, account: str, group: str, operation: str) -> ProviderError:
    where: dict[str, Any] = {"account": account, "group": group, "operation": operation}
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        detail = status_message(getattr(exc, "body", None))
        message = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return Throttled(message, retry_after_s=retry_after(getattr(exc, "headers", None)),
                             **where)
        if status in (401, 403):
            return Denied(message, **where)
        if status == 404:
            return NotFound(message, **where)
        if status == 409:
            return Conflict(message, **where)
        if status >= 500:
            return Transient(message, **where)
        return ProviderError(message, **where)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Transient("timed out", **where)
    # aiohttp's ClientError (connection refused/reset) and OSError: the API server is away.
    return Transient(f"{type(exc).__name__}: {exc}"[:300], **where)
