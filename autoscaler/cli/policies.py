"""``autoscaler policies``: the built-in and installed policies with their parameters.

Everything shown comes from the registry and each policy's ``Params`` model, so a third-party
policy installed with an ``autoscaler.policies`` entry point appears with its own parameters,
defaults and descriptions, exactly as its YAML block will be validated.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from importlib.metadata import entry_points
from typing import Any

import click
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from autoscaler.registry import POLICY_GROUP, Registry, RegistryError


def _type_name(annotation: Any) -> str:
    """A short, YAML-minded spelling of a parameter's type: ``float | none``, ``a|b``."""
    origin = typing.get_origin(annotation)
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
        entry["builtin"] = module.split(".")[0] == "policies"
        entry["summary"] = _summary(item)
        params: list[dict[str, Any]] = []
        model: type[BaseModel] = item.Params
        for field_name, field in model.model_fields.items():
            required = field.is_required()
            default = None if required or field.default is PydanticUndefined else field.default
            params.append(
                {
                    "name": field_name,
                    "type": _type_name(field.annotation),
                    "required": required,
                    "default": to_jsonable_python(default),
                    "description": field.description or "",
                }
            )
        entry["params"] = params
        described.append(entry)
    return described


def _render(described: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="scaling policies", show_lines=True)
    table.add_column("policy", no_wrap=True)
    table.add_column("parameter", no_wrap=True)
    for column in ("type", "default", "description"):
        table.add_column(column, overflow="fold")
    for entry in described:
        origin = "built-in" if entry.get("builtin") else (entry.get("distribution") or "plugin")
        label = f"[bold]{entry['name']}[/bold]\n{origin}"
        if "error" in entry:
            table.add_row(label, "", "", "", f"[red]{entry['error']}[/red]")
            continue
        if not entry["params"]:
            table.add_row(label, "-", "", "", entry["summary"])
        for i, param in enumerate(entry["params"]):
            default = "required" if param["required"] else json.dumps(param["default"])
            table.add_row(
                label if i == 0 else "",
                param["name"],
                param["type"],
                default,
                param["description"],
            )
    Console().print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def policies(as_json: bool) -> None:
    """List the scaling policies (built-in and installed plugins) and their parameters."""
    registry = Registry[Any](POLICY_GROUP, "policy").load_entry_points()
    described = describe(registry)
    if as_json:
        click.echo(json.dumps(described, indent=2))
    else:
        _render(described)
