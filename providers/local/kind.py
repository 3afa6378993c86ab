"""The ``local`` kind as config validation sees it: settings and checks, nothing that runs.

The entry point names ``LocalProvider`` here, so loading the config (``validate``, the
simulator) imports pydantic models only; the client, its subprocess handling and its logging
load when a daemon builds the client. A cloud kind follows the same split for its SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup
from autoscaler.providers.local.settings import LocalAccountSettings, LocalSettings, group_problems

if TYPE_CHECKING:
    from autoscaler.providers.local.client import LocalClient

class LocalProvider:
    """The ``local`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "local"
    AccountSettings: ClassVar[type[BaseModel]] = LocalAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = LocalSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        return group_problems(group)

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> LocalClient:
        from autoscaler.providers.local.client import LocalClient

        return LocalClient(account, groups, clock)
