"""The ``aws`` account client: one aiobotocore Auto Scaling client per account.

Calls it makes (the least-privilege policy of the README names exactly these):

- ``autoscaling:DescribeAutoScalingGroups``: every group of the account, up to 100 names a
  call, following ``NextToken``;
- ``autoscaling:DescribeScalingActivities``: only for groups that are short (fewer instances
  than desired), one call each, to tell a capacity failure from a slow launch and to see spot
  interruptions; a group that is whole costs no activity call;
- ``autoscaling:SetDesiredCapacity`` with ``HonorCooldown=False``: the daemon's guards are the
  cooldown; the ASG's own would make an accepted decision silently not happen.

Retries: botocore's ``standard`` retry mode retries throttling, 5xx and connection errors
inside one call, with its own jittered backoff; what is still failing after its attempts is
mapped once (``errors.map_error``) and the daemon's actuator backs off further.
``SetDesiredCapacity`` takes an absolute size, so a retry can never add instances twice; the
API has no idempotency token, so ``request_id`` is only logged.

Not guaranteed: spot interruptions are counted only when the group is seen short after one
(the interrupted instance gone, its replacement not yet in service) and the activity names the
interruption; an interruption replaced between two describes is not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import NotFound, ProviderError, Transient
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.aws.errors import map_error
from autoscaler.providers.aws.settings import AwsAccountSettings, AwsGroupSettings, missing_sdk
from autoscaler.providers.aws.states import (
    count,
    group_state,
    launch_failure,
    other_failure,
    spot_interruptions,
)

log = structlog.get_logger("autoscaler.providers.aws")

NAMES_PER_CALL = 100  # DescribeAutoScalingGroups' limit on AutoScalingGroupNames
ACTIVITIES_PER_CALL = 20
ACTIVITY_CALLS_AT_ONCE = 8
RETRY_ATTEMPTS = 3  # the first call and two retries (botocore's standard default)


class AwsClient:
    """Implements ``autoscaler.ports.provider.AccountClient`` for one AWS account+region."""

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock) -> None:
        settings = account.settings
        if not isinstance(settings, AwsAccountSettings):
            raise TypeError("aws account settings expected")
        self.account = account.name
        self.settings = settings
        self._timeouts = (account.describe_timeout_s, account.resize_timeout_s)
        self._asg: dict[GroupId, str] = {}
        self._market: dict[GroupId, Market] = {}
        for group in groups:
            if not isinstance(group.settings, AwsGroupSettings):
                raise TypeError(f"aws group settings expected for {group.id}")
            self._asg[group.id] = group.settings.asg
            self._market[group.id] = group.market
        self._clock = clock
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._seen_activities: set[str] = set()
        self._logged_failures: dict[GroupId, str] = {}
        self.preemptions: dict[GroupId, int] = dict.fromkeys(self._asg, 0)
        """Spot interruptions seen per group since start (see the module docstring)."""
        self.calls: dict[str, int] = {}
        """API calls made, by operation (botocore's own retries not included)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._client is not None:
            return
        if missing_sdk():
            raise ProviderError(missing_sdk(), account=self.account, operation="start")
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        try:
            session = get_session()
            if self.settings.profile:
                session.set_config_variable("profile", self.settings.profile)
            config = AioConfig(
                retries={"mode": "standard", "total_max_attempts": RETRY_ATTEMPTS},
                connect_timeout=min(10.0, self._timeouts[0]),
                read_timeout=max(self._timeouts),
            )
            self._client = await self._stack.enter_async_context(session.create_client(
                "autoscaling", region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url, config=config,
            ))
        except Exception as exc:
            await self._stack.aclose()
            raise map_error(exc, account=self.account, operation="start") from exc
        log.info("aws_client_started", account=self.account, region=self.settings.region,
                 profile=self.settings.profile, endpoint_url=self.settings.endpoint_url,
                 groups=len(self._asg))

    async def close(self, drain_timeout_s: float) -> None:
        """Closes the HTTP session. Instances are the cloud's: they keep running."""
        client, self._client = self._client, None
        if client is not None:
            await self._stack.aclose()

    @property
    def sdk(self) -> Any:
        """The aiobotocore client once started (None before): for botocore event hooks."""
        return self._client

    def _api(self) -> Any:
        if self._client is None:
            raise Transient("client not started", account=self.account)
        return self._client

    async def _call(self, operation: str, group: str = "", **params: Any) -> Any:
        api = self._api()
        self.calls[operation] = self.calls.get(operation, 0) + 1
        method = getattr(api, _snake(operation))
        try:
            return await method(**params)
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            raise map_error(exc, account=self.account, group=group,
                            operation=operation) from exc

    # ------------------------------------------------------------------ describe

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        names = sorted({self._asg[g] for g in groups if g in self._asg})
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(names), NAMES_PER_CALL):
            chunk = names[start:start + NAMES_PER_CALL]
            params: dict[str, Any] = {"AutoScalingGroupNames": chunk, "MaxRecords": 100}
            while True:
                page = await self._call("DescribeAutoScalingGroups", **params)
                for asg in page.get("AutoScalingGroups", ()):
                    found[str(asg["AutoScalingGroupName"])] = asg
                token = page.get("NextToken")
                if not token:
                    break
                params["NextToken"] = token
        result: dict[GroupId, GroupState | ProviderError] = {}
        short: list[GroupId] = []
        for g in groups:
            name = self._asg.get(g)
            asg = found.get(name) if name is not None else None
            if asg is None:
                result[g] = NotFound(f"no Auto Scaling group named {name!r} in "
                                     f"{self.settings.region}", account=self.account,
                                     group=str(g), operation="DescribeAutoScalingGroups")
                continue
            counts = count(asg)
            result[g] = group_state(g.group, self._market[g], counts, None)
            if counts.short:
                short.append(g)
        if short:
            limit = asyncio.Semaphore(ACTIVITY_CALLS_AT_ONCE)
            states = await asyncio.gather(*(self._with_activities(g, result[g], limit)
                                            for g in short))
            result.update(zip(short, states, strict=True))
        return result

    async def _with_activities(
        self, group: GroupId, state: GroupState | ProviderError, limit: asyncio.Semaphore
    ) -> GroupState | ProviderError:
        """A short group's state with its launch failure (if any) from its activities."""
        assert isinstance(state, GroupState)
        async with limit:
            try:
                page = await self._call("DescribeScalingActivities", group=str(group),
                                        AutoScalingGroupName=self._asg[group],
                                        MaxRecords=ACTIVITIES_PER_CALL)
            except ProviderError as exc:
                # The sizes are known; only the reason is not: report the state, say why.
                log.warning("aws_activities_failed", account=self.account, group=str(group),
                            error_class=exc.kind, error=str(exc))
                return state
        activities = page.get("Activities", [])
        if self._market[group] is Market.SPOT:
            self._count_interruptions(group, activities)
        failure = launch_failure(activities)
        other = other_failure(activities)
        if other is not None and self._logged_failures.get(group) != other:
            self._logged_failures[group] = other
            log.warning("aws_launch_failing", account=self.account, group=str(group),
                        asg=self._asg[group], reason=other)
        if failure is None:
            return state
        return GroupState(
            name=state.name, market=state.market, desired=state.desired,
            booting=state.booting, running=state.running, draining=state.draining,
            pending=state.pending, available=False, reason=failure,
        )

    def _count_interruptions(self, group: GroupId, activities: Sequence[Any]) -> None:
        new = [a for a in spot_interruptions(activities) if a not in self._seen_activities]
        if not new:
            return
        self._seen_activities.update(new)
        self.preemptions[group] = self.preemptions.get(group, 0) + len(new)
        log.info("spot_interruptions", account=self.account, group=str(group),
                 asg=self._asg[group], count=len(new), total=self.preemptions[group])

    # ------------------------------------------------------------------ resize

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        name = self._asg.get(group)
        if name is None:
            raise NotFound("not a group of this account", account=self.account,
                           group=str(group), operation="SetDesiredCapacity")
        await self._call("SetDesiredCapacity", group=str(group), AutoScalingGroupName=name,
                         DesiredCapacity=target, HonorCooldown=False)
        log.info("aws_desired_capacity_set", account=self.account, group=str(group), asg=name,
                 target=target, request_id=request_id)


def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _is_sdk_error(exc: BaseException) -> bool:
    """botocore, aiohttp and socket failures: what ``map_error`` classifies. Anything else is
    a bug here and propagates as such."""
    module = type(exc).__module__
    return (module.startswith(("botocore", "aiobotocore", "aiohttp"))
            or isinstance(exc, OSError | TimeoutError))
