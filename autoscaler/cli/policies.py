"""``autoscaler policies``: the built-in and installed policies with their parameters.

Everything shown comes from the registry and each policy's ``Params`` model, so a third-party
policy installed with an ``autoscaler.policies`` entry point appears with its own parameters,
defaults and descriptions, exactly as its YAML block will be validated.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import textwrap
import types
import typing
from importlib.metadata import entry_points
from typing import Any

import click
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from autoscaler.config.durations import DURATION_JSON_SCHEMA, format_duration
from autoscaler.registry import POLICY_GROUP, Registry, RegistryError


def _type_name(annotation: Any, metadata: typing.Sequence[Any] = ()) -> str:
    """A short, YAML-minded spelling of a parameter's type: ``float | none``, ``a|b``,
    ``duration`` (seconds or 500ms, 2s, 5m, 1h)."""
    if any(getattr(m, "json_schema", None) is DURATION_JSON_SCHEMA for m in metadata):
        return "duration"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _type_name(base, extra)
    if origin is typing.Literal:
        return "|".join(str(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if annotation is type(None):
        return "none"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", str(annotation))


def _summary(item: Any) -> str:
    module = sys.modules.get(getattr(item, "__module__", ""), None)
    doc = inspect.getdoc(module) or inspect.getdoc(item) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def describe(registry: Registry[Any]) -> list[dict[str, Any]]:
    """One JSON-ready entry per policy: where it comes from and its parameters."""
    origins = {ep.name: ep for ep in entry_points(group=POLICY_GROUP)}
    described: list[dict[str, Any]] = []
    for name in registry.names():
        ep = origins.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "target": ep.value if ep is not None else None,
            "distribution": ep.dist.name if ep is not None and ep.dist is not None else None,
        }
        try:
            item = registry.get(name)
        except RegistryError as exc:
            described.append({**entry, "error": str(exc), "params": []})
            continue
        module = getattr(item, "__module__", "")
        entry["builtin"] = module.split(".")[0] == "policies" or module.startswith(
            "autoscaler.policies.")
        entry["summary"] = _summary(item)
        params: list[dict[str, Any]] = []
        model: type[BaseModel] = item.Params
        for field_name, field in model.model_fields.items():
            required = field.is_required()
            default = None if required or field.default is PydanticUndefined else field.default
            params.append(
                {
                    "name": field_name,
                    "type": _type_name(field.annotation, field.metadata),
                    "required": required,
                    "default": to_jsonable_python(default),
                    "description": field.description or "",
                }
            )
        entry["params"] = params
        described.append(entry)
    return described


def _shown(param: dict[str, Any]) -> str:
    """A default as it would be written in YAML: ``5m`` for a duration, ``none``, ``0.333``."""
    value = param["default"]
    if value is None:
        return "none"
    if param["type"].startswith("duration") and isinstance(value, int | float):
        return format_duration(float(value))
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)


def _render(described: list[dict[str, Any]], width: int) -> list[str]:
    """Plain lines no wider than ``width``: per policy a heading and its summary, per
    parameter one line of name, type and default, its description wrapped and indented below
    (a table's description column wraps to a word per line at 80 columns)."""
    lines: list[str] = []
    name_width = max((len(p["name"]) for e in described for p in e["params"]), default=8)
    name_width = min(name_width, 24)
    for entry in described:
        origin = "built-in" if entry.get("builtin") else (entry.get("distribution") or "plugin")
        lines.append(click.style(entry["name"], bold=True) + f"  ({origin})")
        if "error" in entry:
            lines += textwrap.wrap(f"error: {entry['error']}", width, initial_indent="  ",
                                   subsequent_indent="  ")
            lines.append("")
            continue
        if entry.get("summary"):
            lines += textwrap.wrap(entry["summary"].replace("``", ""), width, initial_indent="  ",
                                   subsequent_indent="  ")
        if not entry["params"]:
            lines.append("  no parameters")
        for param in entry["params"]:
            default = "required" if param["required"] else f"default {_shown(param)}"
            head = f"  {param['name']:<{name_width}}  {param['type']}, {default}"
            lines += textwrap.wrap(head, width, subsequent_indent=" " * (name_width + 4),
                                   drop_whitespace=False) if len(head) > width else [head]
            if param["description"]:
                lines += textwrap.wrap(param["description"], width, initial_indent="      ",
                                       subsequent_indent="      ")
        lines.append("")
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def policies(as_json: bool) -> None:
    """List the scaling policies (built-in and installed plugins) and their parameters."""
    registry = Registry[Any](POLICY_GROUP, "policy").load_entry_points()
    described = describe(registry)
    if as_json:
        click.echo(json.dumps(described, indent=2))
    else:
        width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 100))
        click.echo("\n".join(_render(described, width)).rstrip() + "\n")
