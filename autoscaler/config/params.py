"""The pydantic base of every policy's parameters.

It lives in the config layer, not in the decision core: parameters are validated here, at load
time, with file:line errors; the core only ever sees the validated (frozen) instance a policy
was built with.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PolicyParams(BaseModel):
    """Base for every policy's parameters: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
