"""The ``azure`` kind's settings, its state and error mapping as pure functions, its lazy SDK."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.config.models import parse_config
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.core.model import Market
from autoscaler.ports.errors import ConfigError
from autoscaler.ports.provider import AccountSpec
from autoscaler.providers.azure import AzureAccountSettings, AzureProvider
from autoscaler.providers.azure.errors import retry_after_s
from autoscaler.providers.azure.states import classify_vm, group_state
from autoscaler.registry import Registry

ISSUE_SHAPE = """
providers:
  az-prod:  {kind: azure, subscription_id: "0000-0000"}
pools:
  - name: chat
    queue: {kind: memory, name: q}
    sla: {max_wait: 2s}
    capacity: {max: 4}
    groups:
      - {name: od, provider: az-prod, market: on-demand, hourly_price: 4.0,
         resource_group: rg, vmss: chat-od}
"""


def test_the_issue_config_shape_validates(registries: dict[str, Registry[Any]]) -> None:
    config = parse_config(ISSUE_SHAPE, registries=registries)
    account = config.providers["az-prod"].settings
    assert isinstance(account, AzureAccountSettings)
    assert (account.subscription_id, account.credential, account.base_url) == (
        "0000-0000", "default", None)
    assert registries["providers"].get("azure") is AzureProvider


@pytest.mark.parametrize(("change", "line", "field"), [
    ('subscription_id: "0000-0000"}', 3, "subscription_id"),  # emptied below
    ('subscription_id: "0000-0000", credential: password}', 3, "credential"),
    ('subscription_id: "0000-0000", base_url: "ftp://x"}', 3, "base_url"),
    ('subscription_id: "0000-0000", credential: cli, managed_identity_client_id: x}', 3, ""),
    ('subscription_id: "0000-0000", client_secret: hunter2}', 3, "client_secret"),
])
def test_bad_account_settings_name_their_line(
    registries: dict[str, Registry[Any]], change: str, line: int, field: str,
) -> None:
    text = ISSUE_SHAPE.replace('subscription_id: "0000-0000"}', change)
    if field == "subscription_id":
        text = ISSUE_SHAPE.replace('subscription_id: "0000-0000"', 'subscription_id: ""')
    with pytest.raises(ConfigFileError) as raised:
        parse_config(text, "az.yaml", registries=registries)
    message = str(raised.value)
    assert f"az.yaml:{line}:" in message and field in message
    assert "hunter2" not in message  # a value that looks like a secret is not echoed


def test_bad_group_keys_name_their_line(registries: dict[str, Registry[Any]]) -> None:
    text = ISSUE_SHAPE.replace("vmss: chat-od", "vmss: 'bad name!'")
    with pytest.raises(ConfigFileError, match=r"az.yaml:\d+: .*vmss"):
        parse_config(text, "az.yaml", registries=registries)
    text = ISSUE_SHAPE.replace("vmss: chat-od", "asg: chat-od")
    with pytest.raises(ConfigFileError, match="asg"):
        parse_config(text, "az.yaml", registries=registries)


def test_validate_does_not_import_the_sdk(tmp_path: Path) -> None:
    path = tmp_path / "az.yaml"
    path.write_text(ISSUE_SHAPE)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    code = ("import sys; from autoscaler.providers import azure; "
            "assert not [m for m in sys.modules if m.startswith('azure.')], 'sdk imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.mgmt.compute", None)  # as if not installed
    account = AccountSpec("az", "azure", AzureAccountSettings(subscription_id="s"))
    with pytest.raises(ConfigError, match=r"queue-autoscaler\[azure\]"):
        AzureProvider.client(account, [], clock=None)  # type: ignore[arg-type]


def _vm(provisioning: str, *codes: str, message: str = "") -> dict[str, Any]:
    return {"properties": {"provisioningState": provisioning, "instanceView": {
        "statuses": [{"code": c, "message": message} for c in codes]}}}


@pytest.mark.parametrize(("vm", "spot", "bucket", "evicted"), [
    (_vm("Creating", "ProvisioningState/creating"), False, "booting", False),
    (_vm("Creating"), False, "booting", False),
    (_vm("Succeeded", "ProvisioningState/succeeded", "PowerState/starting"), False, "booting",
     False),
    (_vm("Succeeded", "ProvisioningState/succeeded", "PowerState/running"), False, "running",
     False),
    (_vm("Updating", "ProvisioningState/updating", "PowerState/running"), False, "running",
     False),
    (_vm("Deleting", "ProvisioningState/deleting", "PowerState/running"), True, "draining",
     False),
    (_vm("Failed", "ProvisioningState/failed/OverconstrainedAllocationRequest"), True,
     "pending", False),
    (_vm("Failed", "ProvisioningState/failed/OSProvisioningTimedOut"), False, "booting", False),
    (_vm("Succeeded", "ProvisioningState/succeeded", "PowerState/deallocated"), True,
     "draining", True),
    (_vm("Succeeded", "ProvisioningState/succeeded", "PowerState/deallocated"), False,
     "pending", False),
])
def test_vm_states(vm: dict[str, Any], spot: bool, bucket: str, evicted: bool) -> None:
    view = classify_vm(vm, spot)
    assert (view.bucket, view.evicted) == (bucket, evicted)


def test_capacity_not_yet_created_is_pending_and_failures_give_the_reason() -> None:
    vmss = {"sku": {"capacity": 5}, "properties": {"virtualMachineProfile": {"priority": "Spot"}}}
    vms = [_vm("Succeeded", "PowerState/running"),
           _vm("Failed", "ProvisioningState/failed/ZonalAllocationFailed", message="zone 2"),
           _vm("Failed", "ProvisioningState/failed/ZonalAllocationFailed", message="zone 2")]
    state, evicted = group_state("g", Market.SPOT, vmss, vms)
    assert (state.desired, state.running, state.booting, state.pending) == (5, 1, 0, 4)
    assert not state.available and state.reason == "ZonalAllocationFailed: zone 2 (2 instances)"
    assert evicted == frozenset()


def test_evicted_spot_vms_are_not_capacity_and_only_new_ones_make_the_group_unavailable(
) -> None:
    vmss = {"sku": {"capacity": 4}, "properties": {"virtualMachineProfile": {"priority": "Spot"}}}
    running = _vm("Succeeded", "ProvisioningState/succeeded", "PowerState/running")
    evicted = _vm("Succeeded", "ProvisioningState/succeeded", "PowerState/deallocated")
    vms = [{**running, "instanceId": "0"}, {**running, "instanceId": "1"},
           {**evicted, "instanceId": "2"}, {**evicted, "instanceId": "3"}]
    state, ids = group_state("g", Market.SPOT, vmss, vms)
    # Azure counts them in sku.capacity; the daemon must not (nothing would launch for them)
    assert (state.desired, state.running, state.pending, state.draining) == (2, 2, 0, 2)
    assert state.current == 2 and ids == {"2", "3"}
    assert not state.available and "2 instances evicted" in state.reason
    state, _ = group_state("g", Market.SPOT, vmss, vms, seen_evicted=frozenset({"2", "3"}))
    assert state.available and state.desired == 2
    state, _ = group_state("g", Market.SPOT, vmss, vms, seen_evicted=frozenset({"2"}))
    assert not state.available and "1 instance evicted" in state.reason


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s({"Retry-After": "17"}) == 17.0
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    seconds = retry_after_s({"Retry-After": when})
    assert seconds is not None and 55.0 <= seconds <= 61.0
    assert retry_after_s({}) is None and retry_after_s({"Retry-After": "soon"}) is None


def test_two_groups_on_one_scale_set_are_refused_at_build(
    registries: dict[str, Registry[Any]],
) -> None:
    from autoscaler.runtime.app import BuildError, Daemon

    text = ISSUE_SHAPE + (
        "      - {name: od2, provider: az-prod, market: on-demand, hourly_price: 4.0,\n"
        "         resource_group: RG, vmss: Chat-OD}\n")
    config = parse_config(text, registries=registries)
    with pytest.raises(BuildError, match="chat/od and chat/od2 both resize scale set 'chat-od'"):
        Daemon.build(config, registries=registries)
