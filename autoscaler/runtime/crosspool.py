"""The tick pipeline's cross-pool step: every pool's decision of one tick, at once.

Runs after every pool has decided and before the actuation gate. Budgets need it (a whole
config's budget is shared by its pools) and so do per-pool pauses; ``Chain`` runs several
steps in order, each seeing the decisions the previous one returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from autoscaler.core.model import Decision, FleetState, Observation


@dataclass(frozen=True, slots=True)
class TickView:
    """What one tick decided: decisions and the fleets they were made on (pools that could
    not be decided are absent), and every observation sampled."""

    decisions: Mapping[str, Decision]
    fleets: Mapping[str, FleetState]
    observations: Mapping[str, Observation]


class CrossPoolStep(Protocol):
    async def __call__(self, view: TickView) -> Mapping[str, Decision]:
        """The decisions to carry on to the gate (a pool left out is not actuated)."""
        ...


async def identity_step(view: TickView) -> Mapping[str, Decision]:
    """Every pool's decision as it is."""
    return view.decisions


class Chain:
    """Steps applied in order."""

    def __init__(self, steps: Sequence[CrossPoolStep]) -> None:
        self.steps = list(steps)

    async def __call__(self, view: TickView) -> Mapping[str, Decision]:
        for step in self.steps:
            view = replace(view, decisions=await step(view))
        return view.decisions
