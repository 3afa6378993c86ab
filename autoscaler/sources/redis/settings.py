"""What the three Redis queue kinds share: settings, key names, URL redaction.

Key names (``<key>`` is the pool's ``key`` setting; the suffixes are plain string suffixes, not
cluster hash tags):

* ``<key>:completed`` - workers ``INCR`` it once per finished request (completion rate).
* ``<key>:enqueued``  - producers may ``INCR`` it once per enqueued request (arrival rate of
  lists and sorted sets; streams use the stream's own ``entries-added`` counter instead).
* ``<key>:processing:<consumer>`` - list kind: a worker's reliable-pop list.
* ``<key>:inflight``   - zset kind: a hash ``consumer name -> member`` of requests being served
  (and ``<key>:inflight:score``: their scores).
* ``<key>:consumers``, ``<key>:alive:<consumer>`` - worker liveness (``reclaim``).
* ``<key>:dead``       - all kinds: payloads a worker could not serve, ``LPUSH``-ed for a human.
* ``<key>:bighead``    - list kind: written by the probe itself (30 s TTL) to remember the
  time field of a head over 64 KiB instead of copying it every sample (``probe.HEAD_PREFIX``).

All three kinds return the same ``sampler_key`` for one URL, so a daemon that groups pools by
that key samples every pool on a Redis server in one round trip, whatever their kinds.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.sources.redis.probe import Probe

COMPLETED_SUFFIX = ":completed"
PROCESSING_SUFFIX = ":processing"
INFLIGHT_SUFFIX = ":inflight"
DEAD_SUFFIX = ":dead"

_SCHEMES = ("redis", "rediss")


def validate_redis_url(value: str) -> str:
    """Accept ``redis://`` and ``rediss://`` URLs with a host, a valid port and a numeric db.

    Checked at config load so that a typo is reported with its file and line, not as a
    connection error on the first tick. The user-info is checked apart from the rest and never
    quoted in a message: a password with an unencoded ``/``, ``?``, ``#`` or ``@`` would make a
    URL parser read part of it as the port, path or fragment, and echo it back.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(
            f"Redis URL must start with redis:// or rediss:// (got {redact_url(value)!r})"
        )
    userinfo, _at, hostpart = rest.rpartition("@")
    if any(ch in userinfo for ch in "/?#@[]"):
        raise ValueError("Redis URL user or password has a character that must be "
                         "percent-encoded (/ ? # @ [ ] as %2F %3F %23 %40 %5B %5D)")
    safe = f"{scheme}{sep}{hostpart}"  # no secret in it: may be quoted
    try:
        parts = urlsplit(safe)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {safe!r}: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"Redis URL must start with redis:// or rediss:// (got {safe!r})")
    if not parts.hostname:
        raise ValueError(f"Redis URL has no host: {redact_url(value)!r}")
    if port == 0:
        raise ValueError(f"Redis URL has port 0: {redact_url(value)!r}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"Redis URL database must be a number, got {db!r}")
    return value


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and error messages.

    Does not rely on ``urlsplit``: a password with an unencoded ``#``, ``/``, ``?`` or ``@``
    makes it split the authority in the wrong place and print the rest of the password as a
    path or fragment. Everything between ``scheme://`` and the LAST ``@`` is the user-info
    (a host never contains ``@``); its part after the first ``:`` is the password. A user-info
    without ``:`` is hidden whole, since Redis clients may send it as the password. What is not
    a URL at all is not printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparseable url>" if "@" in url else url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{hostpart}"


class RedisSettings(BaseModel):
    """Fields common to every Redis kind. Inputs are hidden from validation errors because the
    URL may carry a password."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="redis://[user:password@]host[:port][/db] or rediss://...")
    key: str = Field(min_length=1, max_length=1024, description="the queue's Redis key")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_redis_url(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return plain_name(value, "key")

    def probe(self) -> Probe:
        """What the sampler's script reads for this pool; each kind's settings say it, so the
        sampler never needs to import the kinds."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to probe it")

    def worker_url(self) -> str:
        """Workers consume this server (``autoscaler.ports.source.ConsumedQueue``)."""
        return self.url


def plain_name(value: str, what: str) -> str:
    """Reject whitespace around and line breaks inside a key or group name (the probe's
    wire format separates names with newlines, and such names are typos in practice)."""
    if value != value.strip() or any(ch in value for ch in "\r\n\x00"):
        raise ValueError(f"{what} must not have surrounding whitespace or line breaks")
    return value
