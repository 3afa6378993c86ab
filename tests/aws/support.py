"""moto's server on 127.0.0.1, and what moto does not model, added on the wire.

moto speaks the real Auto Scaling protocol (groups, launch templates, SetDesiredCapacity,
describe) but launches every instance at once as ``InService``, never runs short, never
throttles and records no scaling activities. ``MotoCloud.hook`` is a botocore ``before-send``
handler registered on OUR client's real aiobotocore client (``AwsClient.sdk``): it answers some
requests itself with responses shaped like AWS's (the query protocol's XML), so botocore's own
parsing and retries run on them:

- throttling: the next N calls of an operation get ``400 Throttling: Rate exceeded``;
- a stockout: ``SetDesiredCapacity`` upward on a stocked-out group is accepted (AWS accepts any
  size within the bounds) and moto's group takes the new desired size WITHOUT launching; its
  ``DescribeScalingActivities`` then answers the failed launch activity AWS writes. When the
  stock returns, moto launches the shortfall, as the ASG retrying its launches would.

Everything else reaches moto. ``sent`` counts the calls moto answered, by action.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import boto3
from aiobotocore.awsrequest import AioAWSResponse
from moto.autoscaling.models import autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
SPOT_STOCKOUT = (
    "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
    "available that matches your request. Launching EC2 instance failed."
)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIATESTSECRETKEYID0",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t/TEST+secret+access+key+never+logged",
    "AWS_SESSION_TOKEN": "session-token-never-logged",
}


class _Body:
    """The ``raw`` of an ``AioAWSResponse``: what aiobotocore reads the body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        return self._body


def response(url: str, status: int, body: str) -> AioAWSResponse:
    return AioAWSResponse(url, status, {"Content-Type": "text/xml"}, _Body(body.encode()))


def error_xml(code: str, message: str) -> str:
    return (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
            "</ErrorResponse>")


def member_xml(asg: str, description: str, cause: str, status: str, message: str,
               activity_id: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return (
        f"<member><ActivityId>{activity_id}</ActivityId>"
        f"<AutoScalingGroupName>{asg}</AutoScalingGroupName>"
        f"<Description>{description}</Description><Cause>{cause}</Cause>"
        f"<StartTime>{now}</StartTime><EndTime>{now}</EndTime>"
        f"<StatusCode>{status}</StatusCode><StatusMessage>{message}</StatusMessage>"
        "<Progress>100</Progress><Details>{}</Details></member>"
    )


def activities_xml(members: list[str]) -> str:
    return (
        f'<DescribeScalingActivitiesResponse xmlns="{NS}"><DescribeScalingActivitiesResult>'
        f"<Activities>{''.join(members)}</Activities></DescribeScalingActivitiesResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</DescribeScalingActivitiesResponse>"
    )


def activity_xml(asg: str, status: str, message: str, desired: int, had: int) -> str:
    """One launch activity, as AWS writes it when the ASG tries to reach ``desired``."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return activities_xml([member_xml(
        asg, f"Launching a new EC2 instance.  Status Reason: {message}",
        f"At {now} an instance was started in response to a difference between desired "
        f"and actual capacity, increasing the capacity from {had} to {desired}.",
        status, message, str(uuid.uuid4()))])


def ok_xml(action: str) -> str:
    return (f'<{action}Response xmlns="{NS}"><ResponseMetadata><RequestId>{uuid.uuid4()}'
            f"</RequestId></ResponseMetadata></{action}Response>")


_SETUP: dict[str, tuple[Any, Any]] = {}
_TEMPLATES: set[str] = set()


def setup_clients(url: str) -> tuple[Any, Any]:
    """Plain boto3 clients for arranging moto's state, built once per server (building a
    client loads the service's model: the slowest part of a test's set-up)."""
    if url not in _SETUP:
        keys = {"aws_access_key_id": "AKIATESTSETUP0000000", "aws_secret_access_key": "x"}
        _SETUP[url] = (
            boto3.client("autoscaling", region_name=REGION, endpoint_url=url, **keys),
            boto3.client("ec2", region_name=REGION, endpoint_url=url, **keys),
        )
    return _SETUP[url]


class MotoCloud:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: Counter[str] = Counter()
        self.throttles: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.stocked_out: dict[str, str] = {}
        self.history: dict[str, list[str]] = {}
        self.setup, self.ec2 = setup_clients(url)

    # ---------------------------------------------------------------- set-up (plain boto3)

    def create(self, *names: str, max_size: int = 20, desired: int = 0) -> None:
        if self.url not in _TEMPLATES:
            self.ec2.create_launch_template(
                LaunchTemplateName="gpu-template",
                LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"})
            _TEMPLATES.add(self.url)
        for name in names:
            self.setup.create_auto_scaling_group(
                AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": "gpu-template"},
                MinSize=0, MaxSize=max_size, DesiredCapacity=desired,
                AvailabilityZones=[f"{REGION}a"])

    def group(self, name: str) -> Any:
        """moto's own record of the group (its server runs in this process)."""
        return autoscaling_backends[DEFAULT_ACCOUNT_ID][REGION].autoscaling_groups[name]

    def instances(self, name: str) -> int:
        return len(self.group(name).instance_states)

    def desired(self, name: str) -> int:
        return int(self.group(name).desired_capacity)

    # ---------------------------------------------------------------- what moto lacks

    def stock_out(self, name: str, reason: str = SPOT_STOCKOUT) -> None:
        self.stocked_out[name] = reason

    def restock(self, name: str) -> None:
        """Capacity is back: the ASG launches its shortfall (moto does it at once)."""
        self.stocked_out.pop(name, None)
        group = self.group(name)
        group.set_desired_capacity(group.desired_capacity)

    def interrupt(self, name: str) -> str:
        """EC2 reclaims one spot instance: it leaves the group, the ASG has not replaced it
        yet, and the group's activities record the termination. Returns its id."""
        group = self.group(name)
        state = group.instance_states.pop()
        self.ec2.terminate_instances(InstanceIds=[state.instance.id])
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.history.setdefault(name, []).insert(0, member_xml(
            name, f"Terminating EC2 instance: {state.instance.id}",
            f"At {now} an instance was taken out of service in response to an EC2 health "
            "check indicating it has been terminated or stopped.", "Successful", "",
            str(uuid.uuid4())))
        return str(state.instance.id)

    def throttle(self, action: str, times: int) -> None:
        self.throttles[action] += times

    async def hook(self, request: Any, **_: Any) -> AioAWSResponse | None:
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        params = {k: v[0] for k, v in parse_qs(text).items()}
        action = params.get("Action", "")
        if self.throttles[action] > 0:
            self.throttles[action] -= 1
            self.throttled[action] += 1
            return response(request.url, 400, error_xml("Throttling", "Rate exceeded"))
        name = params.get("AutoScalingGroupName", "")
        if name in self.stocked_out:
            group = self.group(name)
            if action == "SetDesiredCapacity":
                target = int(params["DesiredCapacity"])
                if target > len(group.instance_states):
                    self.sent["SetDesiredCapacity(stockout)"] += 1
                    group.desired_capacity = target  # accepted; nothing launches
                    return response(request.url, 200, ok_xml(action))
            if action == "DescribeScalingActivities":
                self.sent[action] += 1
                return response(request.url, 200, activity_xml(
                    name, "Failed", self.stocked_out[name], self.desired(name),
                    len(group.instance_states)))
        if action == "DescribeScalingActivities" and name in self.history:
            self.sent[action] += 1
            return response(request.url, 200, activities_xml(self.history[name]))
        self.sent[action] += 1
        return None

    def install(self, sdk: Any) -> None:
        sdk.meta.events.register("before-send.auto-scaling", self.hook)


def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset(url: str) -> None:
    """Forget every Auto Scaling group (moto's server runs in this process). Only that
    backend: re-creating EC2's (AMIs, instance types) would cost seconds per test; its
    launch template and the instances of earlier tests stay, belonging to no group."""
    autoscaling_backends[DEFAULT_ACCOUNT_ID][REGION].reset()
