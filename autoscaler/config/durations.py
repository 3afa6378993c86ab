"""Durations as people write them in YAML: ``500ms``, ``2s``, ``5m``, ``1h`` or plain seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WRONG_TYPE = "a duration must be a number of seconds or a string like 500ms, 2s, 5m, 1h"
MAX_DURATION_S = 366 * 86400.0
"""No duration of this system is longer than a year; ``1e308`` (ticks once, then never) is a
typo or an attack, refused here for every field rather than field by field."""
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds as a float, at most ``MAX_DURATION_S``; raises ``ValueError`` with the accepted
    forms in the message."""
    seconds = parse_offset(value)
    if seconds > MAX_DURATION_S:
        raise ValueError("a duration must be at most 366 days")
    return seconds


def parse_offset(value: object) -> float:
    """Like ``parse_duration`` but only finite, not bounded: a point in a simulated trace
    (``1e9`` means "until the end"), not a wait the daemon would sit through."""
    if isinstance(value, bool):
        raise ValueError(_WRONG_TYPE)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use 500ms, 2s, 5m, 1h or a number of seconds"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(_WRONG_TYPE)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return seconds


DURATION_JSON_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _PATTERN.pattern},
    ],
    "description": "seconds, or a string like 500ms, 2s, 5m, 1h",
}
"""What editors see (``autoscaler schema``): the forms the parser accepts, not a bare float."""

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_JSON_SCHEMA)]
"""A non-negative number of seconds up to 366 days, parsed from the human forms above."""

Offset = Annotated[float, BeforeValidator(parse_offset), WithJsonSchema(DURATION_JSON_SCHEMA)]
"""A finite, non-negative time in a simulated trace, in the same forms, with no upper bound."""


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for messages: ``500ms``, ``2s``, ``5m``, ``1h30m``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest}m" if rest else f"{hours}h"
