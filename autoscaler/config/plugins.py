"""What every config block that names a plugin shares: the registries, and validating the
block's keys with the plugin's own pydantic model in the same pass (so a third-party plugin's
typo gets the same file:line message as a core key).

Kept apart from ``models`` so that ``providers`` (the accounts map) and ``models`` (which
embeds it) both import it and not each other.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from autoscaler.registry import (
    POLICY_GROUP,
    PROVIDER_GROUP,
    SOURCE_GROUP,
    Registry,
    RegistryError,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    """``allow_inf_nan=False``: every number in the file is finite (an ``.inf`` price or
    ``.nan`` bound would poison every sum it enters)."""


def field_error(
    model: str, loc: tuple[int | str, ...], message: str, value: Any
) -> ValidationError:
    """A cross-field error attached to the field the user has to change, so the message names
    that field's line rather than the enclosing block's."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message), loc=loc, input=value
            )
        ],
    )


@cache
def default_registries() -> dict[str, Registry[Any]]:
    """The process-wide registries, filled from installed entry points on first use."""
    return {
        "policies": Registry[Any](POLICY_GROUP, "policy").load_entry_points(),
        "providers": Registry[Any](PROVIDER_GROUP, "provider").load_entry_points(),
        "sources": Registry[Any](SOURCE_GROUP, "queue kind").load_entry_points(),
    }


def registry_of(info: ValidationInfo, which: str) -> Registry[Any]:
    context = info.context or {}
    registries = context.get("registries") or default_registries()
    registry: Registry[Any] = registries[which]
    return registry


def plugin_block(
    data: Any, info: ValidationInfo, which: str, key: str, attribute: str
) -> dict[str, Any]:
    """Split ``{key: name, ...rest}`` and validate rest with the plugin's own model."""
    if isinstance(data, str) and key == "kind":
        data = {"kind": data}
    if not isinstance(data, dict):
        raise ValueError(f"must be a mapping with a {key!r} field")
    if key not in data:
        raise ValueError(f"missing {key!r}")
    rest = {k: v for k, v in data.items() if k != key}
    name = data[key]
    if not isinstance(name, str):
        raise ValueError(f"{key} must be a string")
    try:
        plugin = registry_of(info, which).get(name)
    except RegistryError as exc:
        raise field_error(which, (key,), str(exc), name) from None
    model: type[BaseModel] = getattr(plugin, attribute)
    return {key: name, "settings": model.model_validate(rest, context=info.context)}
