"""Pieces shared by the gcp tests: the fake Compute API per test, clients on it, and the
provider kind wired to anonymous credentials (the fake needs no token; the account's own
credential choice is tested separately with a token the fake checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1  # noqa: F401  (paid once at collection, not in a deadline)

from autoscaler.core.model import Market
from autoscaler.ports.clock import Clock
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.gcp import GcpAccountSettings, GcpGroupSettings, GcpProvider
from autoscaler.providers.gcp.client import GcpClient

PROJECT = "proj-test"


class AnonymousGcpProvider(GcpProvider):
    """The ``gcp`` kind with ``AnonymousCredentials``: what a test registers as ``gcp``."""

    clients: ClassVar[dict[str, GcpClient]] = {}

    @classmethod
    def client(cls, account: AccountSpec, groups: Sequence[ManagedGroup],
               clock: Clock) -> GcpClient:
        client = GcpClient(account, groups, clock, credentials=AnonymousCredentials())
        cls.clients[account.name] = client
        return client


def gcp_client(endpoint: str, groups: Sequence[tuple[GroupId, GcpGroupSettings]],
               clock: Clock, **account: Any) -> GcpClient:
    settings = GcpAccountSettings(project=PROJECT, endpoint=endpoint, **account)
    spec = AccountSpec("gcp-test", "gcp", settings, describe_timeout_s=10.0,
                       resize_timeout_s=10.0)
    managed = [ManagedGroup(gid, Market.SPOT, s, boot_time_s=30.0) for gid, s in groups]
    return GcpClient(spec, managed, clock, credentials=AnonymousCredentials())
