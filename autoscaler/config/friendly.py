"""Plain messages for pydantic's validation errors.

pydantic phrases errors for programmers: ``Input should be a valid tuple`` for a ``command``
written as one string, ``String should match pattern '^[a-z0-9][a-z0-9_.-]{0,62}$'`` for a pool
name with a space. A platform engineer reading ``file:line: field: message`` should see what to
write instead. ``message`` turns one error (``ValidationError.errors()`` item) into such a
sentence; anything not known here keeps pydantic's text with its "Input should" turned into
"must", so no message ever reads as a stack of internals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

PATTERNS = {
    NAME_PATTERN: "must be 1 to 63 lower-case letters, digits, '_', '.' or '-', starting with "
                  "a letter or digit (names become metric labels and cloud resource names)",
}
"""Known regular expressions, described in words."""

_SHOULD = re.compile(r"^(?:Input|String|Value|List|Tuple|Dictionary|Object|Set|Decimal) should ")


def _kind(value: Any) -> str:
    """What the value was, as a person calls it. A string's text is never repeated: after
    ``${ENV}`` and ``${file:}`` resolution it may be a secret put in the wrong field."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _sequence(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    if isinstance(value, str):
        return ("must be a list, not a single string: write [a, b, c] or one '- item' per line "
                "(a command takes each argument as its own item)")
    return f"must be a list ([a, b] or '- item' lines), not {_kind(value)}"


def _must_be(what: str) -> Callable[[Mapping[str, Any]], str]:
    """The message of a value of the wrong type: what it must be, and what it was."""
    return lambda error: f"must be {what}, not {_kind(error.get('input'))}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _items(count: object) -> str:
    return f"{count} item" + ("" if count == 1 else "s")


def _pattern(error: Mapping[str, Any]) -> str:
    pattern = str(error.get("ctx", {}).get("pattern", ""))
    described = PATTERNS.get(pattern)
    if described is not None:
        return described
    return f"has the wrong form (it must match {pattern})"


def _short_string(error: Mapping[str, Any]) -> str:
    size = error.get("ctx", {}).get("min_length", 1)
    return "must not be empty" if size == 1 else f"must be at least {size} characters long"


_BY_TYPE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda e: "is required but missing",
    "extra_forbidden": lambda e: "unknown key",
    "string_pattern_mismatch": _pattern,
    "tuple_type": _sequence,
    "list_type": _sequence,
    "set_type": _sequence,
    "frozen_set_type": _sequence,
    "dict_type": _must_be("a mapping (key: value)"),
    "model_type": _must_be("a mapping (key: value)"),
    "model_attributes_type": _must_be("a mapping (key: value)"),
    "string_type": _must_be("a string"),
    "int_type": _must_be("a whole number"),
    "int_parsing": _must_be("a whole number"),
    "int_from_float": _must_be("a whole number"),
    "float_type": _must_be("a number"),
    "float_parsing": _must_be("a number"),
    "finite_number": lambda e: "must be a finite number",
    "bool_type": _must_be("true or false"),
    "bool_parsing": _must_be("true or false"),
    "greater_than": lambda e: f"must be greater than {_number(e['ctx']['gt'])}",
    "greater_than_equal": lambda e: f"must be at least {_number(e['ctx']['ge'])}",
    "less_than": lambda e: f"must be less than {_number(e['ctx']['lt'])}",
    "less_than_equal": lambda e: f"must be at most {_number(e['ctx']['le'])}",
    "too_short": lambda e: f"must have at least {_items(e['ctx']['min_length'])}",
    "too_long": lambda e: f"must have at most {_items(e['ctx']['max_length'])}",
    "string_too_short": _short_string,
    "string_too_long": lambda e: f"must be at most {e['ctx']['max_length']} characters long",
    "literal_error": lambda e: f"must be {e['ctx']['expected']}",
    "enum": lambda e: f"must be {e['ctx']['expected']}",
}


def message(error: Mapping[str, Any]) -> str:
    """A plain sentence for one pydantic error (``type``, ``msg``, ``input``, ``ctx``)."""
    render = _BY_TYPE.get(str(error.get("type")))
    if render is not None:
        try:
            return render(error)
        except (KeyError, TypeError):  # a ctx without the expected key: fall back
            pass
    text = str(error.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return _SHOULD.sub("must ", text)
