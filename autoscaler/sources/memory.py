"""``memory``: an in-process queue, for the embedded demo and for tests of the shell."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="default", description="queues with the same name are shared")


class MemorySource:
    kind = "memory"
    Settings = MemorySettings
