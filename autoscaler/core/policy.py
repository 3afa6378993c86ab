"""The policy protocol: a pure function of what was observed and the policy's own state.

Policies never read a clock, never do I/O and never see providers. Time arrives in the
observation; what a policy remembers between ticks is the explicit ``state`` it returns, so the
daemon, the simulator and a unit test all drive it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from autoscaler.core.model import FleetState, Observation, Recommendation


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The parts of a pool's config a policy may use, flattened into plain numbers."""

    name: str
    max_wait_s: float
    target: float
    min_instances: int
    max_instances: int
    slots_per_instance: int
    boot_time_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Everything a policy sees on one tick."""

    obs: Observation
    fleet: FleetState
    pool: PoolSettings


@runtime_checkable
class Policy(Protocol):
    """A scaling policy.

    ``kind`` is the name used in YAML and on the command line; ``Params`` validates its YAML
    block (a pydantic model deriving from ``autoscaler.config.params.PolicyParams``; the core
    never calls it, so it is typed loosely here). ``recommend`` returns the desired count with
    a reason and the terms that explain it, plus the state to hand back on the next tick.

    State is persisted between daemon runs (``controller.state_store``) when it is made of
    plain values (numbers, strings, booleans, ``None``, tuples) and named tuples or frozen
    dataclasses: the type of ``initial_state()`` is registered with the state codec
    automatically; a policy whose state nests other such types lists them in an optional
    ``state_types: ClassVar[tuple[type, ...]]``. State the codec cannot encode is simply not
    saved (logged), and the policy starts fresh after a restart.

    Saves skip a pool whose guards' state is unchanged (re-written at least every 30 s). A
    policy whose own state holds a decision a restart must not lose for that long (a latch,
    a mode) names it in an optional ``steady_key(state) -> Hashable``: a change of that value
    is a change of the pool. Leave out what moves every tick (estimators), or nothing is
    ever skipped.
    """

    kind: ClassVar[str]
    Params: ClassVar[type[Any]]

    def __init__(self, params: Any) -> None: ...

    def initial_state(self) -> Any: ...

    def recommend(self, ctx: PolicyContext, state: Any) -> tuple[Recommendation, Any]: ...
