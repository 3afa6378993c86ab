"""``${NAME}`` and ``${file:/path}`` in config values: secrets kept out of the YAML.

``${NAME}`` is the environment variable ``NAME``; ``${file:/run/credentials/unit/redis}`` is
that file's text without its trailing line break (systemd ``LoadCredential=``, a mounted
Kubernetes secret). ``$${`` is a literal ``${``. References are resolved once, at load, in
string VALUES only (never keys); an unset variable or an unreadable file is a
``file:line: field: message`` error naming the variable or file, never its value.

What this does not do: percent-encode. A password put into a URL (``redis://:${PW}@host``)
must already be encoded if it holds ``/ ? # @ [ ] %`` (the URL check then refuses it without
printing it). A resolved value is not re-scanned, so a secret containing ``${`` stays as is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_FILE_BYTES = 64 * 1024
"""A credential is small; a bigger file is a wrong path (a log, a device), not a secret."""


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved; ``path`` is where in the data it sits."""

    def __init__(self, path: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def resolve(
    data: Any, environ: Mapping[str, str] | None = None
) -> tuple[Any, list[UnresolvedReference]]:
    """``data`` with every reference in its string values replaced, and the references that
    could not be resolved (their values are left as written). Iterative, so deep nesting
    costs no recursion."""
    env = os.environ if environ is None else environ
    errors: list[UnresolvedReference] = []
    holder: list[Any] = [data]
    stack: list[tuple[Any, int | str, tuple[int | str, ...]]] = [(holder, 0, ())]
    seen: set[int] = set()  # YAML aliases share containers, and may form cycles
    while stack:
        parent, key, path = stack.pop()
        node = parent[key]
        if isinstance(node, str):
            if "${" in node:
                try:
                    parent[key] = _substitute(node, path, env)
                except UnresolvedReference as exc:
                    errors.append(exc)
        elif isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            keys = node.keys() if isinstance(node, dict) else range(len(node))
            stack.extend((node, k, (*path, str(k) if isinstance(node, dict) else k))
                         for k in keys)
    return holder[0], errors


def _substitute(text: str, path: tuple[int | str, ...], env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        escaped, body = match.group(1), match.group(2)
        if escaped:
            return "${" + body + "}"
        return _value(body, path, env)

    return _REFERENCE.sub(one, text)


def _value(body: str, path: tuple[int | str, ...], env: Mapping[str, str]) -> str:
    if body.startswith("file:"):
        name = body[len("file:"):]
        if not name.startswith("/"):
            raise UnresolvedReference(path, f"${{file:{name}}}: the path must be absolute")
        try:
            with Path(name).open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise UnresolvedReference(
                path, f"${{file:{name}}}: cannot read: {exc.strerror or type(exc).__name__}"
            ) from None
        if len(raw) > MAX_FILE_BYTES:
            raise UnresolvedReference(path, f"${{file:{name}}}: larger than {MAX_FILE_BYTES} bytes")
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise UnresolvedReference(path, f"${{file:{name}}}: not UTF-8 text") from None
    if not _NAME.fullmatch(body):
        raise UnresolvedReference(
            path, f"${{{body}}}: not a variable name or file:/path (write $${{ for a literal)"
        )
    value = env.get(body)
    if value is None:
        raise UnresolvedReference(path, f"${{{body}}}: environment variable {body} is not set")
    return value
