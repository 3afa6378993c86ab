"""``aws``: EC2 Auto Scaling groups through aiobotocore.

The package is split so that what ``validate`` and the simulator import stays free of the SDK:
``settings`` (config keys), ``states`` (API answers → ``GroupState``, pure), ``errors`` (botocore
errors → the error tree) and ``client`` (the account client; imports aiobotocore when it
starts). The entry point names ``AwsProvider``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, ManagedGroup
from autoscaler.providers.aws.settings import AwsAccountSettings, AwsGroupSettings, missing_sdk

if TYPE_CHECKING:
    from autoscaler.providers.aws.client import AwsClient

__all__ = ["AwsAccountSettings", "AwsGroupSettings", "AwsProvider"]


class AwsProvider:
    """The ``aws`` provider kind (the entry point names this class)."""

    kind: ClassVar[str] = "aws"
    AccountSettings: ClassVar[type[BaseModel]] = AwsAccountSettings
    GroupSettings: ClassVar[type[BaseModel]] = AwsGroupSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
        if not isinstance(group.settings, AwsGroupSettings):
            return [("", "aws provider settings expected")]
        if not isinstance(account, AwsAccountSettings):
            return [("provider", "names an account that is not of kind aws")]
        if message := missing_sdk():
            return [("provider", message)]
        return []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> AwsClient:
        from autoscaler.providers.aws.client import AwsClient

        return AwsClient(account, groups, clock)
