"""The pydantic base of every policy's parameters.

It lives in the config layer, not in the decision core: parameters are validated here, at load
time, with file:line errors; the core only ever sees the validated (frozen) instance a policy
was built with.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class PolicyParams(BaseModel):
    """Base for every policy's parameters: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML reads ``yes``/``no``/``on``/``true`` as booleans, and pydantic would take one
        as the number 1 or 0: a typo that silently sets a gain or a target. Numbers must be
        written as numbers."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float) or annotation in (int | None, float | None):
                raise ValueError(f"must be a number, not the boolean {str(value).lower()}")
        return value
