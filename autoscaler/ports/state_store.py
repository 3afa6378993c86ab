"""The state store port: where each pool's controller state outlives the daemon process.

A store keeps one opaque text record per pool; what goes into it (the encoded state, the
fingerprint of the config it was computed under, when it was saved) is the runtime's business
(``autoscaler.runtime.persistence``). Both calls serve many pools in one round trip, so a daemon
with a thousand pools on one server pays one call per tick, not a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class StateStoreError(RuntimeError):
    """A load or save that did not complete (the server is down, slow or refused)."""


class StateStore(Protocol):
    """One record per pool name. Implementations bound every call by their own timeout and
    raise ``StateStoreError`` on failure; they never decode what they hold."""

    @property
    def location(self) -> str:
        """Where the store is, fit for a log line (no secrets)."""

    async def load(self, pools: Sequence[str]) -> Mapping[str, str]:
        """The records of the pools that have one (absent pools: no record)."""

    async def save(self, records: Mapping[str, str]) -> None:
        """Write every record (replacing the previous ones, with the store's expiry)."""

    async def close(self) -> None: ...
