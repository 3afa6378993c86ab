"""The aws account client against moto's server, through the real aiobotocore client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoscaler.core.model import GroupState, Market
from autoscaler.ports.clock import ManualClock
from autoscaler.ports.errors import Denied, NotFound, Throttled
from autoscaler.ports.provider import AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.aws import AwsAccountSettings, AwsGroupSettings, AwsProvider
from autoscaler.providers.aws.client import AwsClient
from tests.aws.support import REGION, SPOT_STOCKOUT, MotoCloud


def groups(names: Sequence[str], market: Market = Market.SPOT) -> list[ManagedGroup]:
    return [ManagedGroup(GroupId("chat", n), market, AwsGroupSettings(asg=f"asg-{n}"))
            for n in names]


async def open_client(cloud: MotoCloud, managed: Sequence[ManagedGroup]) -> AwsClient:
    account = AccountSpec("aws-test", "aws",
                          AwsAccountSettings(region=REGION, endpoint_url=cloud.url))
    client = AwsProvider.client(account, managed, ManualClock())
    await client.start()
    assert client.sdk is not None
    cloud.install(client.sdk)
    return client


@pytest.fixture
async def two(cloud: MotoCloud) -> AsyncIterator[tuple[AwsClient, list[GroupId]]]:
    cloud.create("asg-a", "asg-b")
    managed = groups(["a", "b"])
    client = await open_client(cloud, managed)
    yield client, [g.id for g in managed]
    await client.close(0.0)


async def test_resize_sets_the_desired_capacity_and_describe_reads_it(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    client, (a, b) = two
    await client.resize(a, 3, "req-1")
    assert cloud.desired("asg-a") == 3 and cloud.instances("asg-a") == 3
    states = await client.describe([a, b])
    assert states[a] == GroupState("a", Market.SPOT, desired=3, booting=0, running=3)
    assert states[b] == GroupState("b", Market.SPOT, desired=0, booting=0, running=0)
    assert cloud.sent["DescribeAutoScalingGroups"] == 1  # both groups in one call
    assert cloud.sent["DescribeScalingActivities"] == 0  # no group is short


async def test_describe_of_101_groups_is_two_calls(cloud: MotoCloud) -> None:
    names = [f"g{i:03}" for i in range(101)]
    cloud.create(*(f"asg-{n}" for n in names))
    managed = groups(names)
    client = await open_client(cloud, managed)
    try:
        await client.resize(managed[100].id, 2, "r")
        states = await client.describe([g.id for g in managed])
    finally:
        await client.close(0.0)
    assert len(states) == 101 and all(isinstance(s, GroupState) for s in states.values())
    assert [s.desired for s in states.values() if isinstance(s, GroupState)].count(2) == 1
    assert cloud.sent["DescribeAutoScalingGroups"] == 2  # 100 names, then 1


async def test_a_missing_group_is_not_found_and_the_others_are_described(
    cloud: MotoCloud,
) -> None:
    cloud.create("asg-a")
    managed = groups(["a", "ghost"])
    client = await open_client(cloud, managed)
    try:
        states = await client.describe([g.id for g in managed])
    finally:
        await client.close(0.0)
    assert isinstance(states[managed[0].id], GroupState)
    missing = states[managed[1].id]
    assert isinstance(missing, NotFound) and "asg-ghost" in str(missing)


async def test_a_stockout_is_unavailable_with_the_activity_reason(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    """AWS accepts the size and stays short; the failed activity says why."""
    client, (a, _) = two
    cloud.stock_out("asg-a")
    await client.resize(a, 2, "r")  # accepted, as AWS does
    state = (await client.describe([a]))[a]
    assert isinstance(state, GroupState)
    assert (state.desired, state.pending, state.booting, state.running) == (2, 2, 0, 0)
    assert not state.available and "no Spot capacity" in state.reason
    cloud.restock("asg-a")
    state = (await client.describe([a]))[a]
    assert isinstance(state, GroupState) and state.available and state.running == 2


async def test_throttling_is_retried_by_botocore_then_succeeds_once(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    client, (a, _) = two
    cloud.throttle("SetDesiredCapacity", 2)  # fewer than botocore's attempts
    await client.resize(a, 2, "r")
    assert cloud.throttled["SetDesiredCapacity"] == 2
    assert cloud.sent["SetDesiredCapacity"] == 1 and cloud.instances("asg-a") == 2


async def test_throttling_past_botocore_retries_is_throttled(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    client, (a, _) = two
    cloud.throttle("DescribeAutoScalingGroups", 10)
    with pytest.raises(Throttled, match="Rate exceeded") as caught:
        await client.describe([a])
    assert cloud.throttled["DescribeAutoScalingGroups"] == 3  # botocore's attempts, then us
    assert caught.value.__cause__ is not None  # chained: the SDK's error stays visible


async def test_errors_name_no_secret(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud, aws_env: dict[str, str]
) -> None:
    client, (a, _) = two
    assert client.sdk is not None

    async def deny(request: object, **_: object) -> object:
        from tests.aws.support import error_xml, response

        return response(getattr(request, "url", ""), 403, error_xml(
            "AccessDenied", f"User {aws_env['AWS_ACCESS_KEY_ID']} is not authorized to "
            "perform: autoscaling:SetDesiredCapacity"))

    client.sdk.meta.events.register_first("before-send.auto-scaling.SetDesiredCapacity", deny)
    with capture_logs() as logs, pytest.raises(Denied) as caught:
        await client.resize(a, 1, "r")
    text = str(caught.value) + repr(logs)
    assert "AccessDenied" in text
    for secret in aws_env.values():
        assert secret not in text


async def test_spot_stockout_reason_is_the_activity_message(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    client, (a, _) = two
    cloud.stock_out("asg-a", "Could not launch Spot Instances. SpotMaxPriceTooLow - Your Spot "
                    "request price of 0.1 is lower than the minimum required Spot request "
                    "fulfillment price of 0.2. Launching EC2 instance failed.")
    await client.resize(a, 1, "r")
    state = (await client.describe([a]))[a]
    assert isinstance(state, GroupState) and not state.available
    assert state.reason.startswith("Could not launch Spot Instances. SpotMaxPriceTooLow")
    assert SPOT_STOCKOUT not in state.reason


async def test_spot_interruptions_are_counted_once_each(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    client, (a, _) = two
    await client.resize(a, 3, "r")
    cloud.interrupt("asg-a")
    with capture_logs() as logs:
        state = (await client.describe([a]))[a]
        await client.describe([a])  # the same activity again: not a second preemption
    assert isinstance(state, GroupState)
    assert (state.desired, state.running, state.pending, state.available) == (3, 2, 1, True)
    assert client.preemptions[a] == 1
    [event] = [e for e in logs if e["event"] == "spot_interruptions"]
    assert event["group"] == "chat/a" and event["count"] == 1
    cloud.interrupt("asg-a")
    await client.describe([a])
    assert client.preemptions[a] == 2


async def test_a_named_profile_supplies_the_credentials(
    cloud: MotoCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No key in the environment: the account's ``profile`` is read from the shared files."""
    cloud.create("asg-a")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[gpu-fleet]\naws_access_key_id = AKIAPROFILEKEY000000\n"
                           "aws_secret_access_key = profile-secret-never-logged\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    [managed] = groups(["a"])
    account = AccountSpec("aws-test", "aws", AwsAccountSettings(
        region=REGION, endpoint_url=cloud.url, profile="gpu-fleet"))
    client = AwsProvider.client(account, [managed], ManualClock())
    with capture_logs() as logs:
        await client.start()
        state = (await client.describe([managed.id]))[managed.id]
    await client.close(0.0)
    assert isinstance(state, GroupState)
    assert "profile-secret-never-logged" not in repr(logs) and "AKIAPROFILEKEY" not in repr(logs)

    missing = AwsProvider.client(AccountSpec("aws-test", "aws", AwsAccountSettings(
        region=REGION, endpoint_url=cloud.url, profile="no-such-profile")), [managed],
        ManualClock())
    with pytest.raises(Denied, match="no-such-profile"):
        await missing.start()
        await missing.describe([managed.id])
    await missing.close(0.0)


async def test_no_credentials_at_all_is_denied(
    cloud: MotoCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.create("asg-a")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    [managed] = groups(["a"])
    client = AwsProvider.client(AccountSpec("aws-test", "aws", AwsAccountSettings(
        region=REGION, endpoint_url=cloud.url)), [managed], ManualClock())
    await client.start()
    with pytest.raises(Denied, match="credentials"):
        await client.describe([managed.id])
    await client.close(0.0)


async def test_a_launch_failing_for_another_reason_stays_available_and_is_logged_once(
    two: tuple[AwsClient, list[GroupId]], cloud: MotoCloud
) -> None:
    """A deleted AMI needs a human, not the next group: logged, the group stays available."""
    client, (a, _) = two
    cloud.stock_out("asg-a", "The image id '[ami-0123]' does not exist. Launching EC2 "
                    "instance failed.")
    await client.resize(a, 2, "r")
    with capture_logs() as logs:
        for _ in range(2):
            state = (await client.describe([a]))[a]
            assert isinstance(state, GroupState) and state.available and state.pending == 2
    [event] = [e for e in logs if e["event"] == "aws_launch_failing"]
    assert "ami-0123" in event["reason"] and event["asg"] == "asg-a"
