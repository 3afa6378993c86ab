"""``kind[:k=v,k=v]`` policy specs from the command line, checked by the policy's own Params."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from autoscaler.config.friendly import message as friendly_message
from autoscaler.config.models import PoolConfig
from autoscaler.config.params import PolicyParams
from autoscaler.registry import Registry, RegistryError


class SpecError(ValueError):
    """A policy spec that names no policy or carries parameters its Params reject."""


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """``kind`` None means the pool's configured policy."""

    label: str
    kind: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def parse_scalar(text: str) -> Any:
    """``4`` → 4, ``true`` → True, ``5m`` stays a string (durations parse it later)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_spec(text: str) -> PolicySpec:
    kind, _, rest = text.strip().partition(":")
    if not kind:
        raise SpecError(f"policy spec {text!r}: missing policy kind (e.g. threshold:target=4)")
    overrides: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"policy spec {text!r}: {part!r} is not key=value")
        overrides[key.strip()] = parse_scalar(value.strip())
    return PolicySpec(text.strip(), kind, overrides)


def resolve(
    spec: PolicySpec, pool: PoolConfig, policies: Registry[Any]
) -> tuple[str, PolicyParams]:
    """The policy kind and validated params for a spec.

    Parameters given for the pool's own policy kind override the configured ones; any other
    kind starts from its defaults.
    """
    kind = spec.kind or pool.policy.kind
    try:
        policy = policies.get(kind)
    except RegistryError as exc:
        raise SpecError(f"policy spec {spec.label!r}: {exc}") from None
    base: dict[str, Any] = {}
    if kind == pool.policy.kind:
        base = pool.policy.params.model_dump(exclude_unset=True)
    try:
        params: PolicyParams = policy.Params.model_validate({**base, **spec.overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or kind}: {friendly_message(e)}"
            for e in exc.errors(include_url=False)
        )
        raise SpecError(f"policy spec {spec.label!r}: {problems}") from None
    return kind, params
