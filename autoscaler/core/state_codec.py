"""Controller state ↔ JSON, through a small codec of registered types (never pickle).

Persisted state is read back from a shared server (Redis), so decoding must never run code
chosen by whoever wrote the value: only types registered here can come back, they are looked
up by name in this codec's own table (nothing is imported), and each is rebuilt from exactly
its own fields, checked against its annotations. Anything else (an unknown type, missing or
extra fields, a string where a float belongs) raises ``StateCodecError``; the caller discards
the state and starts fresh.

Encoding of values: ``None``, booleans, integers, strings and finite floats are themselves;
non-finite floats ``{"$float": "inf" | "-inf" | "nan"}`` (JSON has no infinity); tuples
``{"$tuple": [...]}``; string-keyed dicts ``{"$dict": {...}}``; registered named tuples and
dataclasses ``{"$type": name, "fields": {...}}``.

What is not checked: annotation forms other than the plain ones state is made of (``float``,
``int``, ``bool``, ``str``, ``None``, unions, ``tuple[...]``, ``Literal``, registered types,
``Any``) are accepted as they come; values are not checked against a policy's invariants.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from autoscaler.core.availability import Hold
from autoscaler.core.guards import GuardState
from autoscaler.core.pipeline import ControllerState


class StateCodecError(ValueError):
    """A value this codec cannot encode, or a document it will not decode."""


def type_name(cls: type) -> str:
    """The name a registered type is stored under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _fields(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return tuple(getattr(cls, "_fields", ()))


def is_state_type(cls: type) -> bool:
    """Named tuples and dataclasses: the values a codec can register."""
    return dataclasses.is_dataclass(cls) or (
        issubclass(cls, tuple) and hasattr(cls, "_fields")
    )


def _state_types_in(hint: Any) -> list[type]:
    """The named tuples and dataclasses an annotation mentions (in unions and containers)."""
    if isinstance(hint, type) and is_state_type(hint):
        return [hint]
    return [t for arg in typing.get_args(hint) for t in _state_types_in(arg)]


class StateCodec:
    """Encodes and decodes controller state made of registered named tuples and dataclasses.

    ``GuardState``, ``ControllerState`` and ``Hold`` (a capacity hold, saved beside the
    state) are always registered; a pool adds its policy's state types (the type of
    ``initial_state()`` and any ``state_types`` the policy lists).
    """

    def __init__(self, extra: Iterable[type] = ()) -> None:
        self._by_name: dict[str, type] = {}
        self._hints: dict[type, dict[str, Any] | None] = {}
        # Per registered type: (stored name, field names, is a named tuple), for ``encode``,
        # which runs for every pool after every tick.
        self._layout: dict[type, tuple[str, tuple[str, ...], bool]] = {}
        for cls in (GuardState, ControllerState, Hold, *extra):
            self.register(cls)

    def register(self, cls: type) -> None:
        """Register ``cls`` and, through its annotations, the state types nested in it (a
        policy's state that holds another named tuple need not list that one)."""
        if not isinstance(cls, type) or not is_state_type(cls):
            raise StateCodecError(f"only named tuples and dataclasses are state types: {cls!r}")
        if cls in self._layout:
            return
        self._by_name[type_name(cls)] = cls
        self._layout[cls] = (type_name(cls), _fields(cls), not dataclasses.is_dataclass(cls))
        try:
            hints: dict[str, Any] | None = typing.get_type_hints(cls)
        except Exception:  # unresolvable annotations: fields are checked by name only
            hints = None
        self._hints[cls] = hints
        for hint in (hints or {}).values():
            for nested in _state_types_in(hint):
                self.register(nested)

    # ------------------------------------------------------------------ encode

    def encode(self, value: Any) -> Any:
        """A JSON-ready document for ``value``."""
        cls = type(value)
        if cls is float:
            if math.isfinite(value):
                return value
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if value is None or cls is int or cls is bool or cls is str:
            return value
        layout = self._layout.get(cls)
        if layout is not None:
            name, fields, is_tuple = layout
            encode = self.encode
            if is_tuple:
                encoded = {k: encode(v) for k, v in zip(fields, value, strict=True)}
            else:
                encoded = {k: encode(getattr(value, k)) for k in fields}
            return {"$type": name, "fields": encoded}
        if isinstance(value, float):  # a float subclass
            return self.encode(float(value))
        if isinstance(value, bool | int | str):  # subclasses (enums) as their plain values
            return value
        if cls is tuple:
            return {"$tuple": [self.encode(v) for v in value]}
        if cls is list:
            return [self.encode(v) for v in value]
        if cls is dict and all(isinstance(k, str) for k in value):
            return {"$dict": {k: self.encode(v) for k, v in value.items()}}
        raise StateCodecError(f"cannot encode a {type_name(cls)} (not a registered state type)")

    def dumps(self, value: Any) -> str:
        return json.dumps(self.encode(value), separators=(",", ":"), allow_nan=False)

    # ------------------------------------------------------------------ decode

    def decode(self, data: Any) -> Any:
        """The value ``data`` encodes; ``StateCodecError`` for anything not produced by
        ``encode`` with the types registered here."""
        if data is None or isinstance(data, bool | int | float | str):
            return data
        if isinstance(data, list):
            return [self.decode(v) for v in data]
        if not isinstance(data, dict) or len(data) not in (1, 2):
            raise StateCodecError(f"unexpected value {str(data)[:80]}")
        if "$float" in data and len(data) == 1:
            text = data["$float"]
            if text not in ("inf", "-inf", "nan"):
                raise StateCodecError(f"unexpected float {str(text)[:20]}")
            return float(text)
        if "$tuple" in data and len(data) == 1 and isinstance(data["$tuple"], list):
            return tuple(self.decode(v) for v in data["$tuple"])
        if "$dict" in data and len(data) == 1 and isinstance(data["$dict"], dict):
            return {str(k): self.decode(v) for k, v in data["$dict"].items()}
        if set(data) == {"$type", "fields"}:
            return self._decode_object(data["$type"], data["fields"])
        raise StateCodecError(f"unexpected value {str(data)[:80]}")

    def loads(self, text: str | bytes) -> Any:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateCodecError(f"not JSON: {exc}") from None
        return self.decode(data)

    def _decode_object(self, name: Any, fields: Any) -> Any:
        cls = self._by_name.get(name) if isinstance(name, str) else None
        if cls is None:
            raise StateCodecError(f"unknown state type {str(name)[:80]!r}")
        if not isinstance(fields, dict):
            raise StateCodecError(f"{name}: fields must be a mapping")
        expected = _fields(cls)
        if set(fields) != set(expected):
            missing = sorted(set(expected) - set(fields))
            extra = sorted(set(fields) - set(expected))
            raise StateCodecError(f"{name}: fields differ (missing {missing}, unknown {extra})")
        values = {k: self.decode(fields[k]) for k in expected}
        hints = self._hints[cls]
        if hints is not None:
            for key, value in values.items():
                if key in hints and not self._conforms(value, hints[key]):
                    raise StateCodecError(f"{name}.{key}: {value!r:.60} is not {hints[key]}")
        return cls(**values)

    def _conforms(self, value: Any, hint: Any) -> bool:
        """Whether ``value`` fits annotation ``hint`` (see the module docstring for what is
        checked; other forms pass)."""
        if hint is Any or hint is object:
            return True
        if hint is None or hint is type(None):
            return value is None
        if hint is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint in (bool, str):
            return isinstance(value, hint)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            return any(self._conforms(value, arg) for arg in args)
        if origin is typing.Literal:
            return value in args
        if origin is tuple:
            if not isinstance(value, tuple):
                return False
            if len(args) == 2 and args[1] is Ellipsis:
                return all(self._conforms(v, args[0]) for v in value)
            if args:
                return len(args) == len(value) and all(
                    self._conforms(v, a) for v, a in zip(value, args, strict=True)
                )
            return True
        if isinstance(hint, type) and hint in self._hints:
            return isinstance(value, hint)
        return True
