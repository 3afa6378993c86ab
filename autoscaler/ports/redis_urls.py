"""Redis URLs: which forms the daemon accepts, how they are checked, and how they are printed.

One module for every place that takes a Redis URL (queue sources, the state store, leader
election, the worker CLI), so that all of them accept the same forms and none prints a password.
Standard library only: config validation imports it without the Redis client.

Accepted forms (``[user:password@]`` optional everywhere; a password with ``/ ? # @ [ ]`` must
be percent-encoded):

* ``redis://host[:port][/db]`` and ``rediss://...`` (TLS): one server.
* ``unix:///path/to/redis.sock[?db=N]``: one server on a unix socket.
* ``redis+sentinel://host[:port][,host[:port]...]/<master name>[/db]`` (``rediss+sentinel`` for
  TLS to the master): ask the Sentinels (port 26379 by default) which server is the master of
  ``<master name>``, and again after a failover. The password is the master's; Sentinels that
  require one get the same.
* ``redis+cluster://host[:port][,host[:port]...][/0]``: a Redis Cluster, reached through any
  of the listed nodes (see the README for the key layout a cluster needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
UNIX_SCHEME = "unix"
SCHEMES = (*SINGLE_SCHEMES, UNIX_SCHEME, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)
SENTINEL_PORT = 26379
FORMS = ("redis://[user:password@]host[:port][/db], rediss://..., unix:///path.sock[?db=N], "
         "redis+sentinel://host[:port][,host...]/master[/db] or redis+cluster://host[:port][,...]")


@dataclass(frozen=True, slots=True)
class MultiHostUrl:
    """A Sentinel or Cluster URL taken apart: its nodes, master name (Sentinel) and db."""

    tls: bool
    nodes: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


def redis_url_kind(url: str) -> str:
    """``single``, ``unix``, ``sentinel`` or ``cluster`` for a URL that passed validation."""
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        return "sentinel"
    if scheme in CLUSTER_SCHEMES:
        return "cluster"
    return "unix" if scheme == UNIX_SCHEME else "single"


def validate_redis_url(value: str) -> str:
    """Accept the forms in the module docstring; raise ``ValueError`` naming what is wrong.

    Checked at config load so that a typo is reported with its file and line, not as a
    connection error on the first tick. The user-info is checked apart from the rest and never
    quoted in a message: a password with an unencoded ``/``, ``?``, ``#`` or ``@`` would make a
    URL parser read part of it as the port, path or fragment, and echo it back.
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"must be {FORMS} (got {redact_url(value)!r})")
    userinfo, _at, hostpart = rest.rpartition("@")
    if any(ch in userinfo for ch in "/?#@[]"):
        raise ValueError("Redis URL user or password has a character that must be "
                         "percent-encoded (/ ? # @ [ ] as %2F %3F %23 %40 %5B %5D)")
    safe = f"{scheme}{sep}{hostpart}"  # no secret in it: may be quoted
    kind = redis_url_kind(value)
    if kind == "unix":
        _check_unix(safe)
    elif kind == "single":
        _check_single(safe)
    else:
        parse_multi_host(value)
    return value


def _check_single(safe: str) -> None:
    try:
        parts = urlsplit(safe)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {safe!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"Redis URL has no host: {safe!r}")
    if port == 0:
        raise ValueError(f"Redis URL has port 0: {safe!r}")
    _db(parts.path.lstrip("/"))


def _check_unix(safe: str) -> None:
    parts = urlsplit(safe)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ValueError(f"a unix socket URL is unix:///absolute/path.sock[?db=N], got {safe!r}")
    query = parse_qs(parts.query)
    unknown = set(query) - {"db"}
    if unknown:
        raise ValueError(f"unix socket URL: unknown option {sorted(unknown)[0]!r} (only db)")
    _db(query.get("db", [""])[0])


def _db(text: str) -> int:
    if text and not text.isdigit():
        raise ValueError(f"Redis URL database must be a number, got {text!r}")
    return int(text) if text else 0


def parse_multi_host(url: str) -> MultiHostUrl:
    """Nodes, master name and db of a ``redis+sentinel://`` or ``redis+cluster://`` URL."""
    scheme, _sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    hosts, _slash, path = hostpart.partition("/")
    sentinel = scheme.lower() in SENTINEL_SCHEMES
    default_port = SENTINEL_PORT if sentinel else 6379
    nodes = []
    for host in hosts.split(","):
        name, colon, port_text = host.strip().rpartition(":") if ":" in host else (host, "", "")
        if not name or (colon and not port_text.isdigit()):
            raise ValueError(f"Redis URL node {host!r} is not host[:port]")
        port = int(port_text) if colon else default_port
        if not 0 < port < 65536:
            raise ValueError(f"Redis URL node {host!r} has an invalid port")
        nodes.append((name.strip(), port))
    segments = [s for s in path.split("/") if s] if path else []
    if sentinel:
        if not segments:
            raise ValueError("redis+sentinel:// needs the master's name: "
                             "redis+sentinel://host[:port][,host...]/<master name>[/db]")
        master, db_segments = segments[0], segments[1:]
    else:
        master, db_segments = "", segments
    if len(db_segments) > 1:
        raise ValueError(f"Redis URL has an unexpected path after the database: {path!r}")
    db = _db(db_segments[0] if db_segments else "")
    if not sentinel and db != 0:
        raise ValueError("Redis Cluster has only database 0")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else unquote(user)
        if not colon:
            username = None
    return MultiHostUrl(scheme.lower().startswith("rediss"), tuple(nodes), master, db,
                        username, password)


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
