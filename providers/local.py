"""``local``: each instance is one OS process started from the group's ``command``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LocalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] | None = Field(default=None, min_length=1)


class LocalProvider:
    kind = "local"
    Settings = LocalSettings
