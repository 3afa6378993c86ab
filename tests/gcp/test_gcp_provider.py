"""The ``gcp`` provider's edges: settings and config keys, the currentAction mapping, the
error mapping through the real SDK on the Compute REST fake, credentials (no secret in any log
line or error), and the lazy SDK import."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from autoscaler.config.models import parse_config
from autoscaler.core.model import Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.gcp import GcpAccountSettings, GcpGroupSettings, GcpProvider
from autoscaler.providers.gcp.client import GcpClient, request_uuid
from autoscaler.providers.gcp.state import Member, from_members, from_summary
from autoscaler.registry import Registry
from tests.gcp.fake_compute import FakeCompute
from tests.gcp.support import PROJECT, gcp_client

ZONAL = GroupId("p", "zonal")
REGIONAL = GroupId("p", "regional")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeCompute]:
    compute = FakeCompute(clock).start()
    compute.add_mig("mz", zone="us-central1-a")
    compute.add_mig("mr", zone=None, region="us-central1")
    yield compute
    compute.stop()


@pytest.fixture
async def client(fake: FakeCompute, clock: ManualClock) -> AsyncIterator[GcpClient]:
    c = gcp_client(fake.endpoint, [
        (ZONAL, GcpGroupSettings(mig="mz", zone="us-central1-a")),
        (REGIONAL, GcpGroupSettings(mig="mr", region="us-central1")),
    ], clock)
    await c.start()
    yield c
    await c.close(1.0)


# ---------------------------------------------------------------- settings and config

def test_the_issue_config_shape_parses(registries: dict[str, Registry[Any]]) -> None:
    config = parse_config("""
providers:
  gcp-prod: {kind: gcp, project: my-project}
pools:
  - name: chat
    queue: {kind: memory}
    sla: {max_wait: 2s}
    capacity: {max: 8}
    policy: {kind: threshold}
    groups:
      - {name: spot-b, provider: gcp-prod, market: spot, hourly_price: 1.3,
         zone: us-central1-a, mig: chat-spot}
      - {name: od, provider: gcp-prod, market: on-demand, hourly_price: 4.0,
         region: us-central1, mig: chat-od}
""", registries=registries)
    settings = [g.settings for g in config.pools[0].groups]
    assert settings == [GcpGroupSettings(mig="chat-spot", zone="us-central1-a"),
                        GcpGroupSettings(mig="chat-od", region="us-central1")]


@pytest.mark.parametrize(("group", "field"), [
    ("{name: g, provider: gcp-prod, mig: chat}", "zone"),
    ("{name: g, provider: gcp-prod, mig: chat, zone: us-central1-a, region: us-central1}",
     "zone"),
    ("{name: g, provider: gcp-prod, mig: Chat_Spot, zone: us-central1-a}", "mig"),
    ("{name: g, provider: gcp-prod, mig: chat, zone: us-central1}", "zone"),
    ("{name: g, provider: gcp-prod, asg: chat, zone: us-central1-a}", "asg"),
])
def test_bad_group_keys_are_refused_naming_the_field(
    registries: dict[str, Registry[Any]], group: str, field: str,
) -> None:
    text = ("providers: {gcp-prod: {kind: gcp, project: my-project}}\npools:\n"
            "  - name: chat\n    queue: {kind: memory}\n    sla: {max_wait: 2s}\n"
            "    capacity: {max: 8}\n"
            f"    policy: {{kind: threshold}}\n    groups:\n      - {group}\n")
    with pytest.raises(Exception, match=rf"groups\[0\]\.{field}") as info:
        parse_config(text, registries=registries)
    assert "line" in str(info.value) or ":" in str(info.value)


def test_account_keys_are_checked() -> None:
    with pytest.raises(ValidationError, match="project"):
        GcpAccountSettings.model_validate({"project": "X"})
    with pytest.raises(ValidationError, match="endpoint"):
        GcpAccountSettings.model_validate({"project": "my-project", "endpoint": "not a url"})
    with pytest.raises(ValidationError, match="extra"):
        GcpAccountSettings.model_validate({"project": "my-project", "region": "us"})


def test_two_groups_on_one_mig_are_refused(clock: ManualClock) -> None:
    same = GcpGroupSettings(mig="chat", zone="us-central1-a")
    with pytest.raises(ValueError, match="same MIG"):
        gcp_client("http://127.0.0.1:9", [(ZONAL, same), (REGIONAL, same)], clock)


def test_request_ids_are_uuids_and_stable() -> None:
    rid = str(uuid.uuid4())
    assert request_uuid(rid) == rid
    assert request_uuid("retry-7") == request_uuid("retry-7") != request_uuid("retry-8")
    assert uuid.UUID(request_uuid("retry-7"))


# ---------------------------------------------------------------- the mapping

def test_current_actions_map_to_pending_booting_running_draining() -> None:
    stockout = (("ZONE_RESOURCE_POOL_EXHAUSTED", "no T4 left"),)
    members = [
        Member("CREATING", "", stockout), Member("CREATING"),
        Member("CREATING", "PROVISIONING"), Member("VERIFYING", "RUNNING"),
        Member("STARTING", "STAGING"), Member("NONE", "RUNNING"),
        Member("REFRESHING", "RUNNING"), Member("DELETING", "STOPPING"),
        Member("ABANDONING", "RUNNING"), Member("NONE", "STOPPING"),
        Member("NONE", "STOPPED"), Member("SOMETHING_NEW", "RUNNING"),
    ]
    s = from_members("g", Market.SPOT, 8, members)
    assert (s.pending, s.booting, s.running, s.draining) == (2, 4, 2, 3)
    assert not s.available and s.reason.startswith(
        "capacity unavailable: ZONE_RESOURCE_POOL_EXHAUSTED: no T4 left")
    # pending covers what targetSize holds beyond the listed instances
    assert from_members("g", Market.SPOT, 5, [Member("NONE", "RUNNING")]).pending == 4


@pytest.mark.parametrize(("code", "prefix"), [
    ("QUOTA_EXCEEDED", "capacity unavailable"),
    ("ZONE_RESOURCE_STOCKOUT", "capacity unavailable"),
    ("REGION_RESOURCE_STOCKOUT", "capacity unavailable"),
    ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "capacity unavailable"),
    ("RESOURCE_NOT_FOUND", "launches failing"),
])
def test_launch_errors_make_the_group_unavailable(code: str, prefix: str) -> None:
    s = from_members("g", Market.SPOT, 1, [Member("CREATING", "", ((code, "why"),))])
    assert not s.available and s.reason == f"{prefix}: {code}: why" and s.pending == 1


def test_the_summary_maps_like_the_list() -> None:
    s = from_summary("g", Market.ON_DEMAND, 5, {"none": 2, "refreshing": 1, "verifying": 1,
                                                "deleting": 2, "stopping": 1})
    assert (s.desired, s.pending, s.booting, s.running, s.draining) == (5, 1, 1, 3, 3)
    assert s.available


# ---------------------------------------------------------------- errors through the SDK

@pytest.mark.parametrize(("status", "reason", "expected"), [
    (429, "rateLimitExceeded", Throttled),
    (403, "rateLimitExceeded", Throttled),
    (403, "forbidden", Denied),
    (401, "required", Denied),
    (404, "notFound", NotFound),
    (409, "resourceInUseByAnotherResource", Conflict),
    (412, "conditionNotMet", Conflict),
    (500, "backendError", Transient),
    (503, "backendError", Transient),
])
async def test_http_errors_map_to_one_class_each(
    fake: FakeCompute, client: GcpClient, status: int, reason: str, expected: type,
) -> None:
    fake.inject("get", status, reason, mig="mz")
    result = (await client.describe([ZONAL, REGIONAL]))
    error = result[ZONAL]
    assert type(error) is expected and error.operation == "describe"
    assert error.account == "gcp-test" and error.group == "p/zonal"
    assert isinstance(error.__cause__, Exception)  # the SDK's error, chained
    assert not isinstance(result[REGIONAL], ProviderError)  # the other group is described
    fake.inject("resize", status, reason)
    with pytest.raises(expected) as info:
        await client.resize(ZONAL, 1, str(uuid.uuid4()))
    assert info.value.operation == "resize" and info.value.__cause__ is not None


async def test_retry_after_is_kept(fake: FakeCompute, client: GcpClient) -> None:
    fake.inject("resize", 429, "rateLimitExceeded", headers=(("Retry-After", "7"),))
    with pytest.raises(Throttled) as info:
        await client.resize(REGIONAL, 1, str(uuid.uuid4()))
    assert info.value.retry_after_s == 7.0


async def test_a_resize_operation_that_ends_with_a_quota_error_is_capacity_unavailable(
    fake: FakeCompute, client: GcpClient,
) -> None:
    fake.mig("mz").resize_error = ("QUOTA_EXCEEDED", "Quota 'NVIDIA_T4_GPUS' exceeded.")
    with pytest.raises(CapacityUnavailable, match="NVIDIA_T4_GPUS"):
        await client.resize(ZONAL, 4, str(uuid.uuid4()))
    assert fake.mig("mz").target_size == 0


async def test_an_unreachable_api_is_transient(fake: FakeCompute, client: GcpClient) -> None:
    fake.stop()
    error = (await client.describe([ZONAL]))[ZONAL]
    assert isinstance(error, Transient)
    with pytest.raises(Transient):
        await client.resize(ZONAL, 1, str(uuid.uuid4()))


async def test_an_unknown_mig_is_not_found(fake: FakeCompute, clock: ManualClock) -> None:
    c = gcp_client(fake.endpoint, [(ZONAL, GcpGroupSettings(mig="ghost", zone="us-east1-b"))],
                   clock)
    await c.start()
    error = (await c.describe([ZONAL]))[ZONAL]
    assert isinstance(error, NotFound) and "ghost" in str(error)
    await c.close(1.0)


# ---------------------------------------------------------------- credentials

SECRET = "s3cr3t-value-never-logged"
TOKEN = "ya29.access-token-never-logged"


def service_account_file(tmp: Path, token_uri: str) -> tuple[Path, str]:
    """A service-account key file whose token endpoint is the fake; returns the path and a
    line of its private key (what must never be printed)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
        "private_key": pem, "client_email": f"autoscaler@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }))
    return path, pem.splitlines()[5]


async def test_a_credentials_file_is_used_and_no_secret_is_logged(
    tmp_path: Path, clock: ManualClock,
) -> None:
    fake = FakeCompute(clock, token=TOKEN).start()
    fake.add_mig("mz", zone="us-central1-a")
    path, key_line = service_account_file(tmp_path, f"{fake.endpoint}/token")
    settings = GcpAccountSettings(project=PROJECT, endpoint=fake.endpoint,
                                  credentials_file=str(path))
    spec = AccountSpec("gcp-prod", "gcp", settings)
    group = ManagedGroup(ZONAL, Market.SPOT, GcpGroupSettings(mig="mz", zone="us-central1-a"))
    try:
        with capture_logs() as logs:
            client = GcpProvider.client(spec, [group], clock)
            await client.start()
            await client.resize(ZONAL, 2, str(uuid.uuid4()))
            state = (await client.describe([ZONAL]))[ZONAL]
            fake.inject("get", 403, "forbidden")
            denied = (await client.describe([ZONAL]))[ZONAL]
            await client.close(1.0)
    finally:
        fake.stop()
    assert not isinstance(state, ProviderError) and state.desired == 2
    # The account's key file signed every call (google-auth self-signs a JWT for a service
    # account on a custom endpoint, or trades it at the file's token_uri).
    assert fake.authorizations and len(fake.authorizations) == len(fake.requests) - len(
        fake.calls("token"))
    assert isinstance(denied, Denied)
    text = repr(logs) + repr(denied) + str(denied)
    assert [e["credentials"] for e in logs if e["event"] == "gcp_client_started"] == [
        "credentials_file"]
    for secret in (key_line, TOKEN, *fake.authorizations):
        assert secret not in text


async def test_an_unusable_credentials_file_is_denied_without_its_content(
    tmp_path: Path, clock: ManualClock,
) -> None:
    path = tmp_path / "key.json"
    path.write_text('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----'
                    f'{SECRET}", "client_email": "x@y"}}')
    settings = GcpAccountSettings(project=PROJECT, credentials_file=str(path))
    group = ManagedGroup(ZONAL, Market.SPOT, GcpGroupSettings(mig="mz", zone="us-central1-a"))
    client = GcpProvider.client(AccountSpec("gcp-prod", "gcp", settings), [group], clock)
    with capture_logs() as logs, pytest.raises(Denied) as info:
        await client.start()
    await client.close(1.0)
    assert str(path) in str(info.value) and info.value.operation == "start"
    assert SECRET not in str(info.value) + repr(logs)


def test_validate_prints_no_secret_and_loads_no_sdk(tmp_path: Path) -> None:
    """``autoscaler validate`` on a gcp config: accepted, without importing the SDK, and
    without reading (or printing) the credentials file."""
    creds, key_line = service_account_file(tmp_path, "http://127.0.0.1:9/token")
    config = tmp_path / "c.yaml"
    config.write_text(f"""
providers:
  gcp-prod: {{kind: gcp, project: my-project, credentials_file: {creds}}}
pools:
  - name: chat
    queue: {{kind: memory}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 8}}
    policy: {{kind: threshold}}
    groups:
      - {{name: spot, provider: gcp-prod, market: spot, zone: us-central1-a, mig: chat-spot}}
""")
    probe = ("import sys\nfrom autoscaler.cli import main\n"
             "try:\n    main(['validate', sys.argv[1]])\nexcept SystemExit as e:\n"
             "    code = e.code\n"
             "print('SDK_LOADED' if 'google.cloud.compute_v1' in sys.modules else 'SDK_LAZY')\n"
             "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SDK_LAZY" in done.stdout
    assert key_line not in done.stdout + done.stderr


@pytest.mark.parametrize("content", ['{"type": "impersonated_thing", "secret": "%s"}',
                                     'not json %s'])
async def test_a_credentials_file_of_an_unknown_type_is_denied(
    tmp_path: Path, clock: ManualClock, content: str,
) -> None:
    path = tmp_path / "odd.json"
    path.write_text(content % SECRET)
    settings = GcpAccountSettings(project=PROJECT, credentials_file=str(path))
    group = ManagedGroup(ZONAL, Market.SPOT, GcpGroupSettings(mig="mz", zone="us-central1-a"))
    client = GcpProvider.client(AccountSpec("gcp-prod", "gcp", settings), [group], clock)
    with pytest.raises(Denied, match="credentials_file") as info:
        await client.start()
    await client.close(1.0)
    assert SECRET not in str(info.value)


def test_a_missing_sdk_is_a_clear_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock,
) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.compute_v1", None)  # as if not installed
    group = ManagedGroup(ZONAL, Market.SPOT, GcpGroupSettings(mig="mz", zone="us-central1-a"))
    settings = GcpAccountSettings(project=PROJECT)
    [(field, message)] = GcpProvider.check_group(group, settings)
    assert field == "" and "queue-autoscaler[gcp]" in message
    with pytest.raises(ValueError, match=r"queue-autoscaler\[gcp\]"):
        GcpProvider.client(AccountSpec("gcp-prod", "gcp", settings), [group], clock)


def test_credential_refresh_failures_are_denied_unless_marked_retryable() -> None:
    from google.auth import exceptions as auth_exc

    from autoscaler.providers.gcp.errors import map_api_error

    where = {"account": "a", "group": "p/g", "operation": "describe"}
    assert isinstance(map_api_error(auth_exc.RefreshError("invalid_grant"), **where), Denied)
    retryable = auth_exc.RefreshError("metadata server unavailable", retryable=True)
    assert isinstance(map_api_error(retryable, **where), Transient)
