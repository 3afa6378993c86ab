"""The keys of an ``azure`` account and group, and the pure checks on them (no SDK, no I/O).

Separate from the kind (the package's ``__init__``) so that the client module can use them
without importing the package that imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autoscaler.ports.provider import ManagedGroup

Credential = Literal["default", "environment", "workload_identity", "managed_identity", "cli"]


class AzureAccountSettings(BaseModel):
    """The keys of an ``azure`` account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z-]+$",
                                 description="the subscription holding the scale sets")
    base_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="ARM endpoint (default https://management.azure.com)")
    credential: Credential = Field(
        default="default", description="default (DefaultAzureCredential's chain), environment, "
        "workload_identity, managed_identity or cli")
    managed_identity_client_id: str | None = Field(
        default=None, min_length=1, description="client id of a user-assigned managed identity")

    @model_validator(mode="after")
    def _identity_needs_managed(self) -> AzureAccountSettings:
        if self.managed_identity_client_id is not None and self.credential not in (
            "default", "managed_identity"
        ):
            raise ValueError("managed_identity_client_id applies only to credential: "
                             f"managed_identity or default, not {self.credential!r}")
        return self


class AzureGroupSettings(BaseModel):
    """The keys of an ``azure`` group (Azure's own naming rules, checked at load time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_group: str = Field(min_length=1, max_length=90, pattern=r"^[-\w.()]*[-\w()]$",
                                description="the scale set's resource group")
    vmss: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][-\w.]*$",
                      description="the scale set's name")


def group_problems(group: ManagedGroup, account: BaseModel) -> Sequence[tuple[str, str]]:
    """``check_group`` of the kind: what its settings models alone cannot see."""
    if not isinstance(group.settings, AzureGroupSettings):
        return [("", "azure provider settings expected")]
    if not isinstance(account, AzureAccountSettings):
        return [("provider", "an azure group needs an account of kind azure")]
    return []
