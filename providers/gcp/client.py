"""The ``gcp`` account client: one per account, on google-cloud-compute's REST clients.

google-cloud-compute is synchronous, so every call runs in the account's own
``AccountExecutor`` (never in the event loop, never in asyncio's shared executor), and it is
imported here, in the worker thread of ``start``, not when the kind is loaded.

- ``describe``: per group, ``instanceGroupManagers.get`` (or the regional one) for
  ``targetSize`` and the ``currentActions`` summary; ``listManagedInstances`` only while the
  MIG creates instances (it alone splits pending from booting and carries ``lastAttempt``
  errors). Compute has no call that gets a list of named MIGs, so the groups of one describe
  are read concurrently in the executor, not in one call.
- ``resize``: ``resize`` with ``requestId`` (a retry of one actuation is one operation on
  Google's side, for the API's idempotency window), then polls THAT operation with this
  client's own ``ZoneOperationsClient``/``RegionOperationsClient`` (``ExtendedOperation.result``
  polls through an internal client that ignores ``client_options``: a private or fake endpoint
  would be bypassed). How far: until the operation is ``DONE``, which for a MIG resize means
  the new ``targetSize`` is set and the creations or deletions are scheduled, not that any
  instance runs. An operation that ends with errors raises (capacity codes ->
  ``CapacityUnavailable``); one still running when ``resize_timeout`` is nearly spent is taken
  as accepted (it exists and has not failed), logged as ``gcp_operation_still_running``; the
  next describe shows its effect.
- SDK retries are off (``retry=None``): the daemon's actuator is the one place that retries,
  by class of error, with the same request id.

Not guaranteed: ``requestId`` deduplicates only within the API's window (documented as at
least 60 minutes); a retry after that would be a second, identical, absolute resize: harmless.
Credentials are loaded once, in ``start``; the SDK refreshes tokens itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import Denied, NotFound, ProviderError, Transient
from autoscaler.ports.provider import AccountExecutor, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.gcp.errors import map_api_error, map_operation_errors
from autoscaler.providers.gcp.settings import (
    GcpAccountSettings,
    GcpGroupSettings,
    check_group,
    sdk_missing,
)
from autoscaler.providers.gcp.state import (
    SUMMARY_BOOTING,
    SUMMARY_CREATING,
    SUMMARY_DRAINING,
    SUMMARY_RUNNING,
    Member,
    creating_count,
    from_members,
    from_summary,
)

log = structlog.get_logger("autoscaler.providers.gcp")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
SUMMARY_FIELDS = (*SUMMARY_RUNNING, *SUMMARY_BOOTING, *SUMMARY_DRAINING, *SUMMARY_CREATING)


def request_uuid(request_id: str) -> str:
    """Compute wants a UUID as ``requestId``: the daemon's ids are UUIDs already; anything
    else maps to a stable UUID, so retries with the same id stay one request."""
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"autoscaler:{request_id}"))


def credentials_from_file(path: str) -> Any:
    """Credentials from a file of a known ``type``, each through its own loader (the generic
    ``load_credentials_from_file`` is deprecated: it accepts any configuration unchecked).
    Service-account keys, workload identity federation configs (``external_account``: a file
    or URL source, or AWS) and gcloud's authorized-user files are accepted."""
    import json

    with open(path, encoding="utf-8") as handle:
        kind = json.load(handle).get("type")
    if kind == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            path, scopes=SCOPES)
    if kind == "external_account":
        from google.auth import aws, identity_pool

        with open(path, encoding="utf-8") as handle:
            source = json.load(handle).get("credential_source") or {}
        loader = aws.Credentials if source.get("environment_id", "").startswith("aws") else (
            identity_pool.Credentials)
        return loader.from_file(path, scopes=SCOPES)  # type: ignore[no-untyped-call]
    if kind == "authorized_user":
        from google.oauth2 import credentials

        return credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
            path, scopes=SCOPES)
    raise ValueError(f"credentials type {kind!r} is not one of service_account, "
                     "external_account, authorized_user")


class _Sdk:
    """The four REST clients of one account (made in a worker thread, by ``start``)."""

    def __init__(self, credentials: Any, endpoint: str | None) -> None:
        from google.api_core.client_options import ClientOptions
        from google.cloud import compute_v1

        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        common: dict[str, Any] = {"credentials": credentials, "client_options": options,
                                  "transport": "rest"}
        self.compute = compute_v1
        self.zonal = compute_v1.InstanceGroupManagersClient(**common)
        self.regional = compute_v1.RegionInstanceGroupManagersClient(**common)
        self.zone_ops = compute_v1.ZoneOperationsClient(**common)
        self.region_ops = compute_v1.RegionOperationsClient(**common)

    def close(self) -> None:
        for client in (self.zonal, self.regional, self.zone_ops, self.region_ops):
            client.transport.close()  # type: ignore[no-untyped-call]


class GcpClient:
    """The one client of a ``gcp`` account (see the module docstring).

    ``credentials`` overrides the account's credential choice (tests pass
    ``AnonymousCredentials`` with a local ``endpoint``); by default they come from
    ``credentials_file`` or ``google.auth.default()``.
    """

    def __init__(self, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock,
                 *, credentials: Any = None) -> None:
        settings = account.settings
        if not isinstance(settings, GcpAccountSettings):
            raise TypeError(f"account {account.name!r}: gcp account settings expected")
        if missing := sdk_missing():
            raise ValueError(missing)
        self.account = account.name
        self.settings = settings
        self.spec = account
        self._clock = clock
        self._credentials = credentials
        problems = [f"group {g.id}: {message}" for g in groups
                    for _, message in check_group(g)]
        if problems:
            raise ValueError("; ".join(problems))
        self.groups: dict[GroupId, ManagedGroup] = {g.id: g for g in groups}
        seen: dict[tuple[str, str], GroupId] = {}
        for g in groups:
            key = (self._settings(g).location, self._settings(g).mig)
            if key in seen:
                raise ValueError(f"groups {seen[key]} and {g.id} name the same MIG "
                                 f"{key[1]!r} in {key[0]}: they would fight over its size")
            seen[key] = g.id
        self._executor = AccountExecutor(f"gcp-{account.name}",
                                         max_workers=min(8, len(groups) + 2))
        self._sdk: _Sdk | None = None

    @staticmethod
    def _settings(group: ManagedGroup) -> GcpGroupSettings:
        settings = group.settings
        assert isinstance(settings, GcpGroupSettings)  # checked in __init__
        return settings

    # ------------------------------------------------------------------ contract

    async def start(self) -> None:
        if self._sdk is None:
            self._sdk = await self._executor.run(self._connect)

    async def describe(
        self, groups: Sequence[GroupId]
    ) -> Mapping[GroupId, GroupState | ProviderError]:
        states = await asyncio.gather(*(self._describe_one(g) for g in groups))
        return dict(zip(groups, states, strict=True))

    async def resize(self, group: GroupId, target: int, request_id: str) -> None:
        managed = self._group(group, "resize")
        if target < 0:
            raise ValueError(f"group {group}: target must be >= 0, got {target}")
        await self._executor.run(self._resize, managed, target, request_uuid(request_id))

    async def close(self, drain_timeout_s: float) -> None:
        """Release the HTTP sessions. MIG instances are the cloud's: nothing is stopped."""
        sdk, self._sdk = self._sdk, None
        self._executor.shutdown()
        if sdk is not None:
            sdk.close()

    # ------------------------------------------------------------------ in the executor

    def _connect(self) -> _Sdk:
        credentials = self._credentials
        source = "given"
        if credentials is None:
            credentials, source = self._load_credentials()
        endpoint = str(self.settings.endpoint).rstrip("/") if self.settings.endpoint else None
        sdk = _Sdk(credentials, endpoint)
        log.info("gcp_client_started", account=self.account, project=self.settings.project,
                 endpoint=endpoint or "default", credentials=source,
                 groups=len(self.groups))
        return sdk

    def _load_credentials(self) -> tuple[Any, str]:
        import google.auth
        from google.auth import exceptions as auth_exc

        path = self.settings.credentials_file
        try:
            if path is not None:
                return credentials_from_file(path), "credentials_file"
            credentials, _ = google.auth.default(scopes=SCOPES)
            return credentials, "default"
        except (auth_exc.GoogleAuthError, OSError, ValueError, KeyError) as exc:
            # The exception's text is not repeated for a file: some parsers quote what they
            # could not parse, and that may be key material.
            what = f"credentials_file {path!r}" if path is not None else (
                "the default credentials chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud "
                "application-default login, metadata server)")
            raise Denied(f"cannot load credentials from {what} ({type(exc).__name__})",
                         account=self.account, operation="start") from exc

    def _where(self, group: ManagedGroup) -> dict[str, Any]:
        s = self._settings(group)
        where: dict[str, Any] = {"project": self.settings.project}
        if s.zone is not None:
            where["zone"] = s.zone
        else:
            where["region"] = s.region
        return where

    def _read(self, group: ManagedGroup) -> GroupState:
        sdk = self._ready(group, "describe")
        s = self._settings(group)
        client = sdk.zonal if s.zone is not None else sdk.regional
        request = {**self._where(group), "instance_group_manager": s.mig}
        timeout = self.spec.describe_timeout_s
        mig = client.get(request=request, retry=None, timeout=timeout)
        summary = {k: int(getattr(mig.current_actions, k, 0) or 0) for k in SUMMARY_FIELDS}
        target = int(mig.target_size)
        if not creating_count(summary):
            return from_summary(group.name, group.market, target, summary)
        members = [
            Member(action=m.current_action, status=m.instance_status,
                   errors=tuple((e.code, e.message) for e in m.last_attempt.errors.errors))
            for m in client.list_managed_instances(request=request, retry=None,
                                                   timeout=timeout)
        ]
        return from_members(group.name, group.market, target, members)

    def _resize(self, group: ManagedGroup, target: int, request_id: str) -> None:
        sdk = self._ready(group, "resize")
        s = self._settings(group)
        where = self._where(group)
        deadline = time.monotonic() + 0.8 * self.spec.resize_timeout_s
        call = sdk.zonal if s.zone is not None else sdk.regional
        try:
            op = call.resize_unary(
                request={**where, "instance_group_manager": s.mig, "size": target,
                         "request_id": request_id},
                retry=None, timeout=self.spec.resize_timeout_s)
            ops = sdk.zone_ops if s.zone is not None else sdk.region_ops
            done = sdk.compute.Operation.Status.DONE
            while op.status != done and time.monotonic() < deadline:
                wait_s = max(1.0, deadline - time.monotonic())
                op = ops.wait(request={**where, "operation": op.name}, retry=None,
                              timeout=wait_s)
        except Exception as exc:
            raise map_api_error(exc, account=self.account, group=str(group.id),
                                operation="resize") from exc
        errors = tuple((e.code, e.message) for e in op.error.errors)
        if errors:
            raise map_operation_errors(errors, account=self.account, group=str(group.id),
                                       operation="resize")
        if op.status != done:
            log.warning("gcp_operation_still_running", account=self.account,
                        group=str(group.id), operation=op.name, target=target)
            return
        log.info("gcp_resize_accepted", account=self.account, group=str(group.id),
                 mig=s.mig, location=s.location, target=target, operation=op.name)

    # ------------------------------------------------------------------ helpers

    async def _describe_one(self, gid: GroupId) -> GroupState | ProviderError:
        group = self.groups.get(gid)
        if group is None:
            return NotFound("no such group on this account", account=self.account,
                            group=str(gid), operation="describe")
        try:
            return await self._executor.run(self._read, group)
        except ProviderError as exc:
            return exc
        except Exception as exc:
            mapped = map_api_error(exc, account=self.account, group=str(gid),
                                   operation="describe")
            mapped.__cause__ = exc
            return mapped

    def _ready(self, group: ManagedGroup, operation: str) -> _Sdk:
        sdk = self._sdk
        if sdk is None:
            raise Transient("account not started", account=self.account, group=str(group.id),
                            operation=operation)
        return sdk

    def _group(self, gid: GroupId, operation: str) -> ManagedGroup:
        group = self.groups.get(gid)
        if group is None:
            raise NotFound("no such group on this account", account=self.account,
                           group=str(gid), operation=operation)
        return group
