"""The YAML config: strict pydantic models, checked in full at load time.

Policy parameters, queue settings and provider settings belong to their plugins; each plugin
class carries a pydantic model (``Params`` or ``Settings``) and the blocks here validate against
it, so a typo in a third-party policy's parameter is reported with the same file:line precision
as a typo in ``capacity``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from autoscaler.config.budget import BudgetConfig
from autoscaler.config.checks import one_pool_per_queue
from autoscaler.config.controller import ControllerConfig
from autoscaler.config.controller import LeaderElectionConfig as LeaderElectionConfig  # re-exported
from autoscaler.config.controller import StateStoreConfig as StateStoreConfig  # re-exported
from autoscaler.config.durations import Duration, Offset
from autoscaler.config.friendly import message as friendly_message
from autoscaler.config.interpolate import resolve
from autoscaler.config.params import PolicyParams
from autoscaler.config.plugins import Strict, field_error, plugin_block, registry_of
from autoscaler.config.plugins import default_registries as default_registries  # re-exported
from autoscaler.config.providers import (
    ProviderAccount,
    check_groups,
    record_account_kinds,
    resolve_kind,
)
from autoscaler.config.reserved import reserved_sizes
from autoscaler.config.spot import check_spot_knobs
from autoscaler.config.yaml_lines import ConfigFileError, LocatedDocument, load_yaml, parse_yaml
from autoscaler.core.model import Market
from autoscaler.registry import (
    Registry,
)

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
"""Pool and group names end up in metric labels and cloud resource names: keep them plain."""


# --------------------------------------------------------------------------- pool parts


class QueueBlock(Strict):
    """Where the pool's requests wait; validated by the queue kind's ``Settings``."""

    kind: str
    settings: BaseModel

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        return plugin_block(data, info, "sources", "kind", "Settings")


class SlaConfig(Strict):
    """The promise: a fraction ``target`` of requests waits at most ``max_wait``."""

    max_wait: Duration = Field(gt=0)
    target: float = Field(default=0.99, gt=0, lt=1)


class CapacityConfig(Strict):
    """Bounds of the pool's total, what an instance holds, and the spot-fallback knobs.

    ``on_demand_base``: the first instances of the desired total always go on on-demand
    groups (never counted toward spot); it does not raise the total (``min`` does).
    ``boot_timeout``: a group whose instances stay booting or pending longer is held
    unavailable (the capacity-failure backoff) and its shortfall moves to the next group;
    default 3 x ``boot_time``, none when ``boot_time`` is 0 (an instant boot has nothing to
    time out).
    """

    min: int = Field(default=0, ge=0)
    max: int = Field(ge=1)
    initial: int | None = Field(default=None, ge=0)
    slots_per_instance: int = Field(default=1, ge=1, le=4096)
    boot_time: Duration = 0.0
    boot_time_spread: Duration = 0.0
    on_demand_base: int = Field(default=0, ge=0)
    boot_timeout: Duration | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CapacityConfig:
        if self.max < self.min:
            raise field_error("capacity", ("max",), f"must be >= min ({self.min})", self.max)
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise field_error(
                "capacity", ("initial",), f"must be within [min, max] = [{self.min}, {self.max}]",
                self.initial,
            )
        if self.boot_time_spread > self.boot_time:
            raise field_error(
                "capacity", ("boot_time_spread",), "must not exceed boot_time",
                self.boot_time_spread,
            )
        if self.on_demand_base > self.max:
            raise field_error(
                "capacity", ("on_demand_base",), f"must not exceed max ({self.max})",
                self.on_demand_base,
            )
        slowest = self.boot_time + self.boot_time_spread
        if self.boot_timeout is not None and self.boot_timeout <= slowest:
            raise field_error(
                "capacity", ("boot_timeout",),
                f"must exceed the slowest normal boot (boot_time + boot_time_spread = "
                f"{slowest:g}s), or every boot would time out", self.boot_timeout,
            )
        return self

    @property
    def initial_instances(self) -> int:
        return self.min if self.initial is None else self.initial

    @property
    def boot_timeout_s(self) -> float | None:
        """The effective boot timeout: the configured one, else 3 x boot_time (None: none)."""
        if self.boot_timeout is not None:
            return float(self.boot_timeout)
        return 3.0 * float(self.boot_time) if self.boot_time > 0 else None


class PolicyBlock(Strict):
    """``kind`` names a registered policy; the other keys are its parameters."""

    kind: str
    settings: PolicyParams

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        return plugin_block(data, info, "policies", "kind", "Params")

    @property
    def params(self) -> PolicyParams:
        return self.settings


class ScalingRule(Strict):
    """At most ``value`` instances (``pods``) or percent of the count at the start of the
    period (``percent``) added or removed within any ``period`` seconds (HPA policy)."""

    type: Literal["pods", "percent"] = Field(description="pods: a count; percent: of current")
    value: int = Field(gt=0, description="instances, or percent of the period's start count")
    period: Duration = Field(gt=0, le=3600, description="sliding window in seconds")


class ScalingBehavior(Strict):
    """One direction of HPA ``behavior``: a stabilization window and rate rules.

    ``select`` combines the rules like HPA's ``selectPolicy``: ``max`` allows the largest
    change any rule allows, ``min`` the smallest, ``disabled`` forbids this direction. No rules
    means no rate limit.
    """

    stabilization_window: Duration = Field(default=0.0, le=3600)
    select: Literal["max", "min", "disabled"] = "max"
    rules: tuple[ScalingRule, ...] = ()


def _default_scale_up() -> ScalingBehavior:
    """HPA's default: no stabilization, max(4 instances, +100 %) per 15 s.

    Kept for GPU fleets: from one instance this reaches 5, 10, 20, 40 within a minute, far
    inside a 2-5 minute boot, so the limit only guards against a runaway metric.
    """
    return ScalingBehavior(
        stabilization_window=0.0,
        rules=(
            ScalingRule(type="pods", value=4, period=15.0),
            ScalingRule(type="percent", value=100, period=15.0),
        ),
    )


def _default_scale_down() -> ScalingBehavior:
    """HPA's default: act on the highest recommendation of the last 300 s, then -100 % / 15 s.

    300 s suits GPU fleets too: it exceeds a typical 2-5 minute boot, so (ski-rental argument)
    an idle instance is kept at least as long as the boot a needless removal would cost again.
    """
    return ScalingBehavior(
        stabilization_window=300.0,
        rules=(ScalingRule(type="percent", value=100, period=15.0),),
    )


class BehaviorConfig(Strict):
    """HPA ``behavior`` semantics, every window in seconds on the injected clock.

    ``scale_to_zero_after``: with ``capacity.min: 0`` the last instance goes only after no
    demand (nothing waiting, in flight or arriving) for this long. The default, 600 s, is twice
    the scale-down window because a return from zero makes the first requests wait a full
    boot, which on GPUs is minutes.
    """

    scale_up: ScalingBehavior = Field(default_factory=_default_scale_up)
    scale_down: ScalingBehavior = Field(default_factory=_default_scale_down)
    scale_to_zero_after: Duration = Field(default=600.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _down_percent(self) -> BehaviorConfig:
        for i, rule in enumerate(self.scale_down.rules):
            if rule.type == "percent" and rule.value > 100:
                raise ValueError(
                    f"scale_down.rules[{i}]: a percent rule removes at most 100, got {rule.value}"
                )
        return self


class ServiceModel(Strict):
    """How long one request occupies a slot, for traces that only carry token counts."""

    overhead_s: Duration = Field(default=0.05, ge=0)
    prefill_tokens_per_s: float = Field(default=10_000.0, gt=0)
    decode_s_per_token: float = Field(default=0.02, ge=0)
    distribution: Literal["exponential", "lognormal", "fixed"] = "exponential"
    mean_s: Duration = Field(default=1.0, gt=0)
    cv: float = Field(default=1.0, ge=0)
    batching: dict[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="measured points: requests sharing an instance -> service-time multiplier",
    )
    """Batching is not free: ``{1: 1.0, 8: 1.4, 32: 2.6}`` says a request takes 1.4x as long
    when 8 share the instance. Interpolated linearly (``simulations.traces.batch_multiplier``)
    and applied at ``slots_per_instance``; empty: service time does not depend on the slots."""


class StockoutWindow(Strict):
    """Seconds from the start of a simulated trace during which launches in a group fail."""

    start: Offset
    end: Offset

    @model_validator(mode="after")
    def _ordered(self) -> StockoutWindow:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class GroupSimulation(Strict):
    """Simulator-only behaviour of a group (ignored by the daemon): spot preemptions, stockouts,
    stalled boots.

    Preemptions are a Poisson process per instance-hour; after ``preemption_notice`` the
    instance is gone and requests still in flight on it are re-queued at the head of the queue.
    """

    preemptions_per_hour: float = Field(default=0.0, ge=0)
    preemption_notice: Duration = 120.0
    stockouts: tuple[StockoutWindow, ...] = ()
    boot_stalls: tuple[StockoutWindow, ...] = ()
    """Windows in which launches are accepted but do not come up until the window ends (then
    boot as usual): a cloud that takes instances it cannot provision, which only
    ``capacity.boot_timeout`` catches."""


class GroupConfig(Strict):
    """One instance group; ``provider`` names an account (``providers:``) or an implicit one
    (``local``); the account's kind's ``GroupSettings`` check the remaining keys."""

    name: Name
    provider: str
    kind: str
    market: Market = Market.ON_DEMAND
    hourly_price: float = Field(default=0.0, ge=0)
    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1)
    """Reserved groups only: the committed instances (``min = max = count``; config/reserved)."""
    simulation: GroupSimulation = Field(default_factory=GroupSimulation)
    settings: BaseModel

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError("must be a mapping")
        keys = ("name", "market", "hourly_price", "min", "max", "count", "simulation")
        common = reserved_sizes({k: data[k] for k in keys if k in data})
        rest = {k: v for k, v in data.items() if k not in common and k != "provider"}
        if "kind" in rest:
            raise field_error(
                "group", ("kind",), "unknown key (a group names its account with provider:)",
                rest["kind"],
            )
        account = data.get("provider")
        if account is None:
            raise ValueError("missing 'provider'")
        if not isinstance(account, str):
            raise field_error("group", ("provider",), "must be a string", account)
        try:
            kind = resolve_kind(account, info, registry_of(info, "providers"))
        except ValueError as exc:
            raise field_error("group", ("provider",), str(exc), account) from None
        block = plugin_block({"kind": kind, **rest}, info, "providers", "kind", "GroupSettings")
        return {**common, "provider": account, **block}

    @model_validator(mode="after")
    def _min_within_max(self) -> GroupConfig:
        if self.max is not None and self.min > self.max:
            raise field_error("group", ("min",), f"must not exceed the group's max ({self.max})",
                              self.min)
        return self


def _first_repeat(names: Iterable[str]) -> tuple[int, str] | None:
    """Index and value of the first name already seen, for an error on that entry's line."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            return index, name
        seen.add(name)
    return None


class PoolConfig(Strict):
    name: Name
    queue: QueueBlock
    sla: SlaConfig
    capacity: CapacityConfig
    policy: PolicyBlock = Field(default_factory=lambda: PolicyBlock.model_validate("threshold"))
    behavior: BehaviorConfig = Field(default_factory=BehaviorConfig)
    service_model: ServiceModel = Field(default_factory=ServiceModel)
    groups: tuple[GroupConfig, ...] = Field(min_length=1)
    budget: BudgetConfig | None = None
    """This pool's monthly budget (``autoscaler.config.budget``)."""

    @model_validator(mode="after")
    def _groups(self) -> PoolConfig:
        repeat = _first_repeat(g.name for g in self.groups)
        if repeat is not None:
            index, name = repeat
            raise field_error(
                "pool", ("groups", index, "name"),
                f"group name {name!r} is used twice in this pool", name,
            )
        bounded = [g.max for g in self.groups]
        if all(m is not None for m in bounded) and sum(m or 0 for m in bounded) < self.capacity.min:
            raise ValueError(
                f"the groups' max sizes add up to {sum(m or 0 for m in bounded)}, "
                f"below capacity.min ({self.capacity.min})"
            )
        check_spot_knobs(self)
        return self



class Config(Strict):
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    providers: dict[Name, ProviderAccount] = Field(default_factory=dict)
    pools: tuple[PoolConfig, ...] = Field(min_length=1)
    budget: BudgetConfig | None = None
    """The whole config's monthly budget, over every pool (``autoscaler.config.budget``)."""

    @model_validator(mode="before")
    @classmethod
    def _accounts_first(cls, data: Any, info: ValidationInfo) -> Any:
        record_account_kinds(data, info)
        return data

    @model_validator(mode="after")
    def _unique_pools(self, info: ValidationInfo) -> Config:
        repeat = _first_repeat(p.name for p in self.pools)
        if repeat is not None:
            index, name = repeat
            raise field_error(
                "config", ("pools", index, "name"), f"pool name {name!r} is used twice", name
            )
        one_pool_per_queue(self, registry_of(info, "sources"))
        check_groups(self, registry_of(info, "providers"))
        return self

    def pool(self, name: str) -> PoolConfig:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no pool named {name!r} (pools: {', '.join(p.name for p in self.pools)})")


# --------------------------------------------------------------------------- loading

_FIELD_PART = re.compile(r"^[A-Za-z_][\w-]*$")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """``pools[0].capacity.max``, without the union tags pydantic adds (``literal[…]``)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _FIELD_PART.match(part):
            text += f".{part}" if text else part
    return text or "(top level)"


def _messages(exc: ValidationError, document: LocatedDocument) -> list[str]:
    errors = exc.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]
    messages = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            other[: len(loc)] == loc and len(other) > len(loc) for other in locs
        ):
            continue  # a list emptied by its own failing items: the items' errors say it all
        msg = friendly_message(error)  # plain words, not pydantic's phrasing
        line = document.line_of(loc)
        messages.append(f"{document.path}:{line}: {_format_loc(loc)}: {msg}")
    return messages


def config_from_document(
    document: LocatedDocument, registries: dict[str, Registry[Any]] | None = None
) -> Config:
    if not isinstance(document.data, dict):
        line = document.line_of(())
        raise ConfigFileError([f"{document.path}:{line}: the file must be a YAML mapping"])
    data, unresolved = resolve(document.data)
    if unresolved:
        raise ConfigFileError([f"{document.path}:{document.line_of(e.path)}: "
                               f"{_format_loc(e.path)}: {e}"
                               for e in sorted(unresolved, key=lambda e: document.line_of(e.path))])
    try:
        return Config.model_validate(data, context={"registries": registries})
    except ValidationError as exc:
        raise ConfigFileError(_messages(exc, document)) from None


def load_config(path: str | Path, registries: dict[str, Registry[Any]] | None = None) -> Config:
    """Load and fully validate a config file, or raise ``ConfigFileError`` naming lines."""
    return config_from_document(load_yaml(path), registries)


def parse_config(
    text: str, name: str = "<string>", registries: dict[str, Registry[Any]] | None = None
) -> Config:
    return config_from_document(parse_yaml(text, name), registries)
