"""What the Auto Scaling API says, mapped to ``GroupState`` and to the error tree.

The inputs are shaped like the API's parsed responses and botocore's real exception classes;
moto cannot produce these states (every instance it launches is ``InService`` at once).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.core.model import Market
from autoscaler.ports.errors import (
    CapacityUnavailable,
    Conflict,
    Denied,
    NotFound,
    ProviderError,
    Throttled,
    Transient,
)
from autoscaler.providers.aws.errors import map_error
from autoscaler.providers.aws.states import (
    count,
    group_state,
    launch_failure,
    other_failure,
    spot_interruptions,
)

BAD = Path(__file__).resolve().parent.parent / "bad_configs"


def instance(state: str, health: str = "Healthy") -> dict[str, str]:
    return {"InstanceId": "i-1", "LifecycleState": state, "HealthStatus": health}


def test_lifecycle_states_map_to_booting_running_draining() -> None:
    asg = {"DesiredCapacity": 6, "Instances": [
        instance("Pending"), instance("Pending:Wait"), instance("Pending:Proceed"),
        instance("InService"), instance("InService", "Unhealthy"),
        instance("Terminating"), instance("Terminating:Wait"), instance("Detaching"),
        instance("EnteringStandby"), instance("Standby"),
        instance("Terminated"), instance("Detached"), instance("Warmed:Running"),
    ]}
    counts = count(asg)
    assert (counts.desired, counts.booting, counts.running, counts.draining) == (6, 3, 1, 6)
    state = group_state("spot", Market.SPOT, counts, None)
    assert state.pending == 2 and state.current == 6 and state.available


def activity(status: str, message: str, description: str = "Launching a new EC2 instance.",
             cause: str = "") -> dict[str, Any]:
    return {"ActivityId": f"{status}-{len(message)}-{description[:10]}", "StatusCode": status,
            "StatusMessage": message, "Description": description, "Cause": cause}


@pytest.mark.parametrize("message", [
    "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you "
    "requested (us-east-1a). Launching EC2 instance failed.",
    "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
    "available that matches your request. Launching EC2 instance failed.",
    "Could not launch Spot Instances. SpotMaxPriceTooLow - Your Spot request price of 0.1 is "
    "lower than the minimum required Spot request fulfillment price of 0.2.",
    "Could not launch Spot Instances. MaxSpotInstanceCountExceeded - Max spot instance count "
    "exceeded. Launching EC2 instance failed.",
    "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the "
    "instance bucket that the specified instance type belongs to. VcpuLimitExceeded",
])
def test_capacity_failures_are_recognised(message: str) -> None:
    assert launch_failure([activity("Failed", message)]) == message


def test_only_the_newest_launch_counts_and_other_failures_are_not_capacity() -> None:
    stockout = activity("Failed", "InsufficientInstanceCapacity - no Spot capacity")
    recovered = activity("Successful", "")
    in_progress = activity("InProgress", "")
    terminate = activity("Successful", "", description="Terminating EC2 instance: i-1")
    assert launch_failure([terminate, stockout, recovered]) is not None
    assert launch_failure([recovered, stockout]) is None
    assert launch_failure([in_progress, stockout]) is None
    bad_ami = activity("Failed", "The image id '[ami-1]' does not exist. Launching EC2 "
                       "instance failed.")
    assert launch_failure([bad_ami]) is None
    assert other_failure([bad_ami]) is not None and other_failure([stockout]) is None


def test_spot_interruptions_are_terminations_that_name_them() -> None:
    interrupted = activity(
        "Successful", "", description="Terminating EC2 instance: i-0abc",
        cause="At 2024-05-01T10:00:00Z an instance was taken out of service in response to "
              "an EC2 instance rebalance recommendation.")
    scale_in = activity("Successful", "", description="Terminating EC2 instance: i-0def",
                        cause="a user request update of AutoScalingGroup constraints")
    health = activity(
        "Successful", "", description="Terminating EC2 instance: i-0fed",
        cause="At 2024-05-01T10:02:00Z an instance was taken out of service in response to "
              "an EC2 health check indicating it has been terminated or stopped.")
    assert spot_interruptions([interrupted, scale_in, health]) == [
        interrupted["ActivityId"], health["ActivityId"]]


def client_error(code: str, message: str = "m", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "SetDesiredCapacity")


@pytest.mark.parametrize(("exc", "expected"), [
    (client_error("Throttling", "Rate exceeded"), Throttled),
    (client_error("RequestLimitExceeded"), Throttled),
    (client_error("AccessDenied", status=403), Denied),
    (client_error("UnauthorizedOperation", status=403), Denied),
    (client_error("ValidationError", "AutoScalingGroup name not found - chat-spot"), NotFound),
    (client_error("ValidationError", "New SetDesiredCapacity value 30 is above max value 20 "
                  "for the AutoScalingGroup."), CapacityUnavailable),
    (client_error("ValidationError", "some other refusal"), Denied),
    (client_error("ScalingActivityInProgress"), Conflict),
    (client_error("ResourceContention"), Conflict),
    (client_error("ServiceUnavailable", status=503), Transient),
    (client_error("SomethingNew", status=502), Transient),
    (client_error("SomethingNew", status=400), ProviderError),
    (EndpointConnectionError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com"),
     Transient),
    (ReadTimeoutError(endpoint_url="https://x"), Transient),
    (NoCredentialsError(), Denied),
    (ProfileNotFound(profile="gpu"), Denied),
])
def test_errors_map_to_one_class(exc: Exception, expected: type[ProviderError]) -> None:
    mapped = map_error(exc, account="aws-prod", group="chat/spot", operation="resize")
    assert type(mapped) is expected
    assert (mapped.account, mapped.group, mapped.operation) == ("aws-prod", "chat/spot",
                                                                "resize")


def test_key_ids_are_redacted_from_messages() -> None:
    mapped = map_error(client_error("InvalidClientTokenId", "key AKIAABCDEFGHIJKLMNOP is bad"),
                       account="a", operation="describe")
    assert isinstance(mapped, Denied) and "AKIAABCDEFGHIJKLMNOP" not in str(mapped)


def test_validate_never_repeats_an_endpoint_password() -> None:
    result = CliRunner().invoke(main, ["validate", str(BAD / "aws_endpoint_with_password.yaml")])
    assert result.exit_code == 2 and "endpoint_url" in result.stderr
    assert "hunter2secret" not in result.output + result.stderr


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "aiobotocore" else object())
    path = tmp_path / "aws.yaml"
    path.write_text("""providers:
  aws-prod: {kind: aws, region: us-east-1}
pools:
  - name: chat
    queue: {kind: memory}
    sla: {max_wait: 2s}
    capacity: {max: 8}
    groups:
      - {name: spot, provider: aws-prod, market: spot, asg: chat-spot}
""")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "queue-autoscaler[aws]" in result.stderr and f"{path}:9:" in result.stderr


def test_validate_and_the_client_module_import_no_sdk() -> None:
    """aiobotocore (and botocore's models) load when an account starts, not when a config is
    validated or the simulator imports the provider registry."""
    code = ("import sys; from autoscaler.providers.aws import AwsProvider; "
            "import autoscaler.providers.aws.client; "
            "print(sorted(m for m in sys.modules if 'boto' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
