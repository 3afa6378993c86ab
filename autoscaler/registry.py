"""Registries by name, filled from entry points; tests build fresh ones.

Adding a policy, provider or queue source means one module plus one entry point in its
package's metadata: nothing in the core lists them.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

POLICY_GROUP = "autoscaler.policies"
PROVIDER_GROUP = "autoscaler.providers"
SOURCE_GROUP = "autoscaler.sources"


class RegistryError(LookupError):
    """A name that nothing registered, or a plugin that failed to load."""


class Registry(Generic[T]):
    """Name → class, with lazy loading of entry points so startup stays cheap."""

    def __init__(self, group: str, what: str) -> None:
        self.group = group
        self.what = what
        self._items: dict[str, T] = {}
        self._pending: dict[str, object] = {}

    def register(self, name: str, item: T) -> T:
        self._items[name] = item
        self._pending.pop(name, None)
        return item

    def load_entry_points(self) -> Registry[T]:
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._pending[ep.name] = ep
        return self

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        ep = self._pending.get(name)
        if ep is None:
            known = ", ".join(sorted(self.names())) or "none"
            raise RegistryError(f"unknown {self.what} {name!r} (known: {known})")
        try:
            item: T = ep.load()  # type: ignore[attr-defined]
        except Exception as exc:  # a broken plugin must name itself, not crash the daemon
            raise RegistryError(f"{self.what} plugin {name!r} failed to load: {exc}") from exc
        return self.register(name, item)

    def names(self) -> list[str]:
        return sorted({*self._items, *self._pending})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._pending

    def __iter__(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)
