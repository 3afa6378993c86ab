"""The ``providers:`` map: named accounts, implicit ones, and group keys checked by the kind."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler.config.models import parse_config
from autoscaler.config.providers import accounts_of, managed_group
from autoscaler.config.yaml_lines import ConfigFileError
from autoscaler.ports.provider import GroupId, ManagedGroup
from autoscaler.registry import Registry
from autoscaler.testing.fakes import FakeAccountSettings, FakeGroupSettings, FakeProvider


class RegionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    region: str


class TagSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    asg: str


class Cloud(FakeProvider):
    """A kind whose accounts need a region and whose groups need an ``asg``."""

    kind: ClassVar[str] = "cloud"
    AccountSettings: ClassVar[type[BaseModel]] = RegionSettings
    GroupSettings: ClassVar[type[BaseModel]] = TagSettings

    @classmethod
    def check_group(cls, group: ManagedGroup, account: BaseModel) -> list[tuple[str, str]]:
        assert isinstance(group.settings, TagSettings) and isinstance(account, RegionSettings)
        if not group.settings.asg.startswith(account.region):
            return [("asg", f"must be in the account's region {account.region!r}")]
        return []


TEXT = """\
providers:
  prod: {kind: cloud, region: us-east-1, resize_timeout: 45s}
  lab: {kind: fake}
pools:
  - name: chat
    queue: {kind: memory}
    sla: {max_wait: 2s}
    capacity: {max: 8}
    groups:
      - {name: spot, provider: prod, market: spot, asg: us-east-1-chat}
      - {name: od, provider: lab, capacity: 3}
      - {name: box, provider: local}
"""


@pytest.fixture
def regs(registries: dict[str, Registry[Any]]) -> dict[str, Registry[Any]]:
    registries["providers"].register("cloud", Cloud)
    registries["providers"].register("fake", FakeProvider)
    return registries


def test_groups_name_accounts_and_get_their_kinds_settings(
    regs: dict[str, Registry[Any]],
) -> None:
    config = parse_config(TEXT, registries=regs)
    spot, od, box = config.pools[0].groups
    assert (spot.provider, spot.kind, od.kind, box.kind) == ("prod", "cloud", "fake", "local")
    assert spot.settings == TagSettings(asg="us-east-1-chat")
    assert od.settings == FakeGroupSettings(capacity=3)
    accounts = accounts_of(config, regs["providers"])
    assert sorted(accounts) == ["lab", "local", "prod"]  # local: implicit
    assert accounts["prod"].settings == RegionSettings(region="us-east-1")
    assert accounts["prod"].resize_timeout_s == 45.0 and accounts["lab"].describe_timeout_s == 5
    assert accounts["lab"].settings == FakeAccountSettings()
    spec = managed_group(config.pools[0], spot)
    assert spec.id == GroupId("chat", "spot") and spec.settings == spot.settings


@pytest.mark.parametrize(("edit", "message"), [
    (("asg: us-east-1-chat", "asg: eu-west-1-chat"),
     "<string>:10: pools[0].groups[0].asg: must be in the account's region 'us-east-1'"),
    (("provider: prod, market", "provider: cloud, market"),
     "<string>:10: pools[0].groups[0].provider: provider 'cloud' is a kind that needs an "
     "account"),
    (("asg: us-east-1-chat", "mig: x"), "<string>:10: pools[0].groups[0].mig: unknown key"),
    (("region: us-east-1, ", ""), "<string>:2: providers.prod.region: is required but missing"),
    (("provider: lab", "provider: lba"), "<string>:11: pools[0].groups[1].provider: unknown "
     "provider 'lba' (accounts under providers: lab, prod; kinds usable without an entry: "),
])
def test_bad_accounts_and_groups_name_their_line(
    regs: dict[str, Registry[Any]], edit: tuple[str, str], message: str,
) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(TEXT.replace(*edit), registries=regs)
    assert any(m.startswith(message) for m in info.value.messages), info.value.messages
