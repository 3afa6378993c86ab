"""The ``providers:`` map of named accounts, and the checks a provider kind runs on its groups.

An account is ``kind`` plus that kind's ``AccountSettings`` (region, project, credentials
file, endpoint override...) and two common per-call deadlines. A group names its account with
``provider:``. A kind whose account settings are all optional (``local``) may be named directly
by a group without an entry: it is then an implicit account named after the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from autoscaler.config.durations import Duration
from autoscaler.config.plugins import plugin_block
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.registry import Registry

if TYPE_CHECKING:
    from autoscaler.config.models import Config, GroupConfig, PoolConfig

DEFAULT_RESIZE_TIMEOUT_S = 30.0


def default_describe_timeout(interval_s: float) -> float:
    """The tick waits for every account's describe (it cannot decide on unknown fleets), so
    the default deadline follows the tick: two intervals, at least 5 s. An account slower
    than its deadline has its pools skipped for that tick, never the other accounts' pools."""
    return max(5.0, 2 * interval_s)
ACCOUNT_COMMON_KEYS = ("describe_timeout", "resize_timeout")


class ProviderAccount(BaseModel):
    """One entry of ``providers:``; ``settings`` is the kind's ``AccountSettings``."""

    model_config = {"extra": "forbid", "frozen": True}

    kind: str
    describe_timeout: Duration | None = Field(
        default=None, gt=0, le=600, description="default: 2 x controller.interval, >= 5 s")
    resize_timeout: Duration = Field(default=DEFAULT_RESIZE_TIMEOUT_S, gt=0, le=3600)
    settings: BaseModel

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError("must be a mapping with a 'kind' field")
        common = {k: data[k] for k in ACCOUNT_COMMON_KEYS if k in data}
        rest = {k: v for k, v in data.items() if k not in common}
        return {**common, **plugin_block(rest, info, "providers", "kind", "AccountSettings")}


def record_account_kinds(data: Any, info: ValidationInfo) -> None:
    """Before the pools are validated, note each account's kind in the validation context, so
    a group's keys are checked against its account's kind (pydantic validates fields in
    order, but a group cannot see a sibling field's result)."""
    context = info.context
    if not isinstance(context, dict) or not isinstance(data, dict):
        return
    accounts: dict[str, str | None] = {}
    raw = data.get("providers")
    if isinstance(raw, dict):
        for name, entry in raw.items():
            kind = entry.get("kind") if isinstance(entry, dict) else None
            accounts[str(name)] = kind if isinstance(kind, str) else None
    context["accounts"] = accounts


def resolve_kind(account: str, info: ValidationInfo, providers: Registry[Any]) -> str:
    """The provider kind behind a group's ``provider:`` (an account, or an implicit one)."""
    context = info.context if isinstance(info.context, dict) else {}
    accounts: Mapping[str, str | None] = context.get("accounts") or {}
    if account in accounts:
        kind = accounts[account]
        if kind is None or kind not in providers:
            raise ValueError(f"account {account!r} is invalid (see its entry under providers:)")
        return kind
    if account in providers:
        kind = providers.get(account)
        try:
            kind.AccountSettings.model_validate({})
        except ValidationError:
            raise ValueError(
                f"provider {account!r} is a kind that needs an account: add one under the "
                f"top-level providers: map (e.g. providers: {{my-{account}: {{kind: {account}, "
                f"...}}}}) and name it here"
            ) from None
        return account
    known = ", ".join(sorted(accounts)) or "none"
    raise ValueError(
        f"unknown provider {account!r} (accounts under providers: {known}; "
        f"kinds usable without an entry: {', '.join(providers.names()) or 'none'})"
    )


def account_spec(name: str, account: ProviderAccount, interval_s: float) -> AccountSpec:
    describe = account.describe_timeout
    return AccountSpec(
        name=name, kind=account.kind, settings=account.settings,
        describe_timeout_s=describe if describe is not None else default_describe_timeout(
            interval_s),
        resize_timeout_s=account.resize_timeout,
    )


def implicit_account(kind: str, providers: Registry[Any], interval_s: float) -> AccountSpec:
    """The account a group gets by naming a kind directly (``provider: local``)."""
    settings = providers.get(kind).AccountSettings.model_validate({})
    return AccountSpec(name=kind, kind=kind, settings=settings,
                       describe_timeout_s=default_describe_timeout(interval_s),
                       resize_timeout_s=DEFAULT_RESIZE_TIMEOUT_S)


def managed_group(pool: PoolConfig, group: GroupConfig) -> ManagedGroup:
    return ManagedGroup(
        id=GroupId(pool.name, group.name),
        market=group.market,
        settings=group.settings,
        queue_kind=pool.queue.kind,
        queue_settings=pool.queue.settings,
        slots_per_instance=pool.capacity.slots_per_instance,
        boot_time_s=pool.capacity.boot_time,
        boot_time_spread_s=pool.capacity.boot_time_spread,
    )


def accounts_of(config: Config, providers: Registry[Any]) -> dict[str, AccountSpec]:
    """Every account a group of ``config`` uses, explicit or implicit, by name."""
    interval = config.controller.interval
    accounts = {name: account_spec(name, a, interval) for name, a in config.providers.items()}
    for pool in config.pools:
        for group in pool.groups:
            if group.provider not in accounts:
                accounts[group.provider] = implicit_account(group.kind, providers, interval)
    return accounts


def check_groups(config: Config, providers: Registry[Any]) -> None:
    """Run every group's ``check_group``: what ``run`` would refuse, found at load time."""
    accounts = accounts_of(config, providers)
    problems: list[InitErrorDetails] = []
    for p, pool in enumerate(config.pools):
        for g, group in enumerate(pool.groups):
            kind = providers.get(group.kind)
            account = accounts[group.provider].settings
            for field, message in kind.check_group(managed_group(pool, group), account):
                loc: tuple[int | str, ...] = ("pools", p, "groups", g)
                problems.append(InitErrorDetails(
                    type=PydanticCustomError("value_error", message),
                    loc=(*loc, field) if field else loc, input=group.name,
                ))
    if problems:
        raise ValidationError.from_exception_data("config", problems)
