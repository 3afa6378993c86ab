"""Carry out a decision: ``set_desired`` on each group whose target differs, concurrently.

Separate from deciding, so dry-run, ``--once`` and the simulator share everything before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.core.model import Decision, FleetState
from autoscaler.ports.provider import Provider, ProviderError


@dataclass(frozen=True, slots=True)
class Actuation:
    """Which groups were resized, and the calls that failed (as ``ProviderError``)."""

    resized: Mapping[str, int]
    errors: tuple[ProviderError, ...]


class Actuator:
    def __init__(self, providers: Mapping[str, Provider], timeout_s: float) -> None:
        self._providers = providers
        self._timeout_s = timeout_s

    def plan(self, decision: Decision, fleet: FleetState) -> dict[str, int]:
        """The groups to resize: target differs from what the provider holds."""
        plan: dict[str, int] = {}
        for name, target in decision.targets.items():
            group = fleet.group(name)
            if group is None or group.desired != target:
                plan[name] = target
        return plan

    async def apply(self, decision: Decision, fleet: FleetState) -> Actuation:
        plan = self.plan(decision, fleet)
        names = list(plan)
        results = await asyncio.gather(
            *(self._set(name, plan[name]) for name in names), return_exceptions=True
        )
        resized: dict[str, int] = {}
        errors: list[ProviderError] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ProviderError):
                errors.append(result)
            elif isinstance(result, Exception):
                errors.append(ProviderError(name, "set_desired", repr(result)))
            elif isinstance(result, BaseException):
                raise result
            else:
                resized[name] = plan[name]
        return Actuation(resized, tuple(errors))

    async def _set(self, group: str, desired: int) -> None:
        provider = self._providers.get(group)
        if provider is None:
            raise ProviderError(group, "set_desired", "no provider for this group")
        try:
            await asyncio.wait_for(provider.set_desired(desired), self._timeout_s)
        except TimeoutError:
            raise ProviderError(
                group, "set_desired", f"no answer within {self._timeout_s:g}s"
            ) from None
