"""The ``gcp`` kind's settings and its pure group check (no SDK import here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from autoscaler.ports.provider import ManagedGroup, missing_extra

# Compute Engine resource names (RFC 1035 labels) and location names.
NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
ZONE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"
REGION = r"^[a-z]+-[a-z]+[0-9]+$"
# Project ids, including legacy domain-scoped ones (``example.com:my-project``).
PROJECT = r"^([a-z0-9.-]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$"


def sdk_missing() -> str | None:
    """Why google-cloud-compute cannot be used (the extra to install), or None; looked up, not
    imported (its import takes seconds)."""
    return missing_extra("the gcp provider", "gcp", ("google.cloud.compute_v1",))


class GcpAccountSettings(BaseModel):
    """The keys of a ``kind: gcp`` account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(pattern=PROJECT, description="the project that holds the MIGs")
    credentials_file: str | None = Field(
        default=None, min_length=1,
        description="a credentials JSON file (default: the google.auth default chain)")
    endpoint: HttpUrl | None = Field(
        default=None, description="Compute API root override (private endpoint, emulator)")


class GcpGroupSettings(BaseModel):
    """The keys of a group on a ``gcp`` account: ``mig`` and its ``zone`` or ``region``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mig: str = Field(pattern=NAME, description="the managed instance group's name")
    zone: str | None = Field(default=None, pattern=ZONE, description="a zonal MIG's zone")
    region: str | None = Field(default=None, pattern=REGION,
                               description="a regional MIG's region")

    @property
    def location(self) -> str:
        """``zones/ZONE`` or ``regions/REGION``: the MIG's place, unique with its name."""
        return f"zones/{self.zone}" if self.zone is not None else f"regions/{self.region}"



def check_group(group: ManagedGroup) -> list[tuple[str, str]]:
    """What ``run`` would refuse about a gcp group (see ``ProviderKind.check_group``)."""
    settings = group.settings
    if not isinstance(settings, GcpGroupSettings):
        return [("", "gcp provider settings expected")]
    if missing := sdk_missing():
        return [("", missing)]
    if (settings.zone is None) == (settings.region is None):
        return [("zone", "a gcp group needs exactly one of `zone` (a zonal MIG) or "
                         "`region` (a regional MIG)")]
    return []
