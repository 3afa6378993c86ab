"""What the decision core needs to know about a pool, as frozen plain values.

The config layer (``autoscaler.config.to_core``) turns validated YAML into these; the core never
sees pydantic models, YAML or the plugin registry. They are frozen slotted dataclasses: hashable,
comparable, cheap to read on the hot path, and serialisable with ``dataclasses.asdict`` (the
state store fingerprints a pool's spec that way, so a changed config discards old state).

Defaults mirror the config's defaults (HPA ``behavior``), so a test or a plugin author can build
a spec by hand without the config loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from autoscaler.core.model import Market
from autoscaler.core.policy import PoolSettings

Select = Literal["max", "min", "disabled"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """At most ``value`` instances (``pods``) or percent (``percent``) per ``period`` seconds."""

    type: Literal["pods", "percent"]
    value: int
    period: float


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """One direction of HPA ``behavior``: a stabilization window (seconds) and rate rules."""

    stabilization_window: float = 0.0
    select: Select = "max"
    rules: tuple[RuleSpec, ...] = ()


def default_scale_up() -> ScalingSpec:
    """HPA's default: no stabilization, max(4 instances, +100 %) per 15 s."""
    return ScalingSpec(0.0, "max", (RuleSpec("pods", 4, 15.0), RuleSpec("percent", 100, 15.0)))


def default_scale_down() -> ScalingSpec:
    """HPA's default: the highest recommendation of the last 300 s, then -100 % per 15 s."""
    return ScalingSpec(300.0, "max", (RuleSpec("percent", 100, 15.0),))


@dataclass(frozen=True, slots=True)
class BehaviorSpec:
    """Both directions plus the idle time before the last instance may go."""

    scale_up: ScalingSpec = field(default_factory=default_scale_up)
    scale_down: ScalingSpec = field(default_factory=default_scale_down)
    scale_to_zero_after: float = 600.0


@dataclass(frozen=True, slots=True)
class CapacitySpec:
    """Hard bounds and what one instance holds.

    ``on_demand_base``: the first instances of the desired total always go on on-demand groups
    (never counted toward spot). ``boot_timeout_s``: a group whose instances stay booting (or
    pending) longer is held unavailable like a capacity failure; None: never.
    """

    max: int
    min: int = 0
    slots_per_instance: int = 1
    boot_time_s: float = 0.0
    initial: int = 0
    on_demand_base: int = 0
    boot_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class SlaSpec:
    """A fraction ``target`` of requests waits at most ``max_wait_s``."""

    max_wait_s: float
    target: float = 0.99


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One instance group as the allocator sees it (``max`` None: unbounded; ``min``: a floor
    its target never goes below, whatever the pool's desired total)."""

    name: str
    market: Market = Market.ON_DEMAND
    hourly_price: float = 0.0
    max: int | None = None
    min: int = 0


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """Everything ``PoolController`` needs about one pool, and nothing about I/O."""

    name: str
    interval_s: float
    sla: SlaSpec
    capacity: CapacitySpec
    groups: tuple[GroupSpec, ...]
    behavior: BehaviorSpec = field(default_factory=BehaviorSpec)

    def settings(self) -> PoolSettings:
        """The flattened numbers a policy sees (``PolicyContext.pool``)."""
        return PoolSettings(
            name=self.name,
            max_wait_s=self.sla.max_wait_s,
            target=self.sla.target,
            min_instances=self.capacity.min,
            max_instances=self.capacity.max,
            slots_per_instance=self.capacity.slots_per_instance,
            boot_time_s=self.capacity.boot_time_s,
            interval_s=self.interval_s,
        )
