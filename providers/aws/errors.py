"""botocore's errors → the product's error tree, once, at the edge (kopf's ``check_response``).

Only codes and class names are compared, so this module imports no SDK: it stays importable
(and testable) where aiobotocore is not installed.

What is not guaranteed: AWS adds error codes over time; an unknown code is classified by its
HTTP status (5xx transient, else a plain ``ProviderError`` that the daemon retries as
transient). Messages are passed on after removing anything shaped like an access key id:
AWS's own messages carry no secret keys, but a key id is nobody's business in a log.
"""

from __future__ import annotations

import re
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

THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "ProvisionedThroughputExceededException", "BandwidthLimitExceeded",
})
DENIED = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "IncompleteSignature", "ExpiredToken", "ExpiredTokenException", "RequestExpired",
    "InvalidAccessKeyId", "MissingAuthenticationToken", "OptInRequired",
    "AuthorizationError", "ServiceLinkedRoleFailure",
})
CONFLICT = frozenset({
    "ScalingActivityInProgress", "ResourceContention", "ResourceInUse",
    "InstanceRefreshInProgress", "ConcurrentModification",
})
TRANSIENT = frozenset({
    "ServiceUnavailable", "InternalFailure", "InternalError", "InternalServerError",
    "Unavailable", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
    "EC2ThrottledException",
})
# botocore exception class names (``botocore.exceptions``), by meaning.
CONNECTION_CLASSES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
    "ConnectTimeoutError", "ConnectionError", "HTTPClientError", "ProxyConnectionError",
    "SSLError", "ResponseStreamingError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientOSError", "TimeoutError",
})
CREDENTIAL_CLASSES = frozenset({
    "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "NoRegionError",
    "CredentialRetrievalError", "UnauthorizedSSOTokenError", "TokenRetrievalError",
    "SSOTokenLoadError", "InvalidConfigError",
})
KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
NOT_FOUND = re.compile(r"not found|does not exist|no such", re.IGNORECASE)
ABOVE_MAX = re.compile(r"above max", re.IGNORECASE)


def redact(text: str) -> str:
    return KEY_ID.sub("[redacted key id]", text)


def _code(exc: BaseException) -> tuple[str, str, int]:
    """``(code, message, http status)`` of a botocore ``ClientError``; empty otherwise."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", "", 0
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode") or 0
    return str(error.get("Code", "")), str(error.get("Message", "")), int(status)


def map_error(
    exc: BaseException, *, account: str, group: str = "", operation: str
) -> ProviderError:
    """The one class of the tree for ``exc`` (raise it ``from exc``)."""
    where: dict[str, str] = {"account": account, "group": group, "operation": operation}
    code, message, status = _code(exc)
    if code:
        text = redact(f"{code}: {message}" if message else code)
        if code in THROTTLED:
            return Throttled(text, account=account, group=group, operation=operation)
        if code in DENIED:
            return Denied(text, **where)
        if code in CONFLICT:
            return Conflict(text, **where)
        if code == "ValidationError":
            if ABOVE_MAX.search(message):
                # The group cannot hold more: its shortfall belongs on the next group.
                return CapacityUnavailable(text, **where)
            if NOT_FOUND.search(message):
                return NotFound(text, **where)
            return Denied(f"request refused, the group's settings need a human: {text}",
                          **where)
        if code in TRANSIENT or status >= 500:
            return Transient(text, **where)
        return ProviderError(text, **where)
    name = type(exc).__name__
    text = redact(str(exc) or name)
    if name in CREDENTIAL_CLASSES:
        return Denied(f"credentials: {text}", **where)
    if name in CONNECTION_CLASSES or isinstance(exc, OSError | TimeoutError):
        return Transient(text, **where)
    return Transient(f"{name}: {text}", **where)
