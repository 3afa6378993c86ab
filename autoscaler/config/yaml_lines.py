"""YAML loading that remembers where every value came from, for errors that name a line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoscaler.ports.errors import ConfigError


class ConfigFileError(ConfigError, ValueError):
    """A config file that cannot be used; ``messages`` are ``file:line: field: message``."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


@dataclass(frozen=True)
class LocatedDocument:
    """The parsed data plus the node tree that knows each value's line."""

    path: str
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Sequence[int | str]) -> int:
        """The 1-based line of the deepest node on ``loc`` that exists in the file.

        Pydantic adds discriminator tags and model names to a location; such parts match no
        key in the file and are skipped, so the line still points at the user's text.
        """
        node = self.root
        line = 1 if node is None else node.start_mark.line + 1
        for part in loc:
            child = _child(node, part)
            if child is None:
                continue
            node = child
            line = node.start_mark.line + 1
        return line


def _child(node: yaml.Node | None, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                child: yaml.Node = value
                return child
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if 0 <= part < len(node.value) else None
    return None


def load_yaml(path: str | Path) -> LocatedDocument:
    """Parse a YAML file; syntax errors become ``ConfigFileError`` naming the line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError([f"{name}: not UTF-8 text ({exc.reason})"]) from exc
    return parse_yaml(text, name)


MAX_DEPTH = 32
"""Deepest nesting of mappings and lists a config may have (a real one uses about 6). PyYAML's
composer and the validators recurse, so a deeper document would end in a ``RecursionError``
traceback instead of a message."""


def _check_depth(text: str, name: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` from PyYAML's event stream, which is produced
    without recursion, before anything that recurses sees the document."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark is not None else 1
                raise ConfigFileError([
                    f"{name}:{line}: nested deeper than {MAX_DEPTH} levels of mappings and lists"
                ])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_yaml(text: str, name: str = "<string>") -> LocatedDocument:
    try:
        _check_depth(text, name)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        loader = yaml.SafeLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigFileError([f"{name}:{line}: invalid YAML: {problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{name}: invalid YAML: {exc}"]) from exc
    except RecursionError:  # aliases can still build a deep structure: say so, no traceback
        raise ConfigFileError([f"{name}: nested too deeply to read"]) from None
    duplicates = _duplicate_keys(root)
    if duplicates:
        raise ConfigFileError([
            f"{name}:{node.start_mark.line + 1}: duplicate key {node.value!r}: the earlier "
            f"value would be silently ignored" for node in duplicates
        ])
    return LocatedDocument(path=name, data=data, root=root)


def _duplicate_keys(root: yaml.Node | None) -> list[yaml.ScalarNode]:
    """Keys repeated within one mapping. PyYAML keeps the last value without a word, so a
    repeated ``max:`` would override the one the author is looking at. Merge keys (``<<``) are
    separate nodes here, so overriding a merged value is not reported."""
    found: list[yaml.ScalarNode] = []
    seen_nodes: set[int] = set()  # aliases share nodes, and may even form cycles
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in keys:
                        found.append(key)
                    keys.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(found, key=lambda k: k.start_mark.line)
