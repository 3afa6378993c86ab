"""The daemon on the ``azure`` provider: the real azure-mgmt-compute aio client against the
local ARM fake (``tests/azure_fake.py``), in the test's own event loop.

``looptime`` fast-forwards the loop clock (the daemon's and the fake's), so boot times,
Retry-After waits and unavailability holds cost no real time; every time below is loop time.
The only test double is the credential (a static token) and the policy that lets azure-core
send it over plain http to the fake.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from autoscaler.config.models import Config, parse_config
from autoscaler.core.model import GroupState
from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import Denied, NotFound, ProviderError, Transient
from autoscaler.ports.provider import AccountClient, AccountSpec, GroupId, ManagedGroup
from autoscaler.providers.azure import AzureProvider
from autoscaler.providers.azure.client import AzureClient
from autoscaler.registry import Registry
from autoscaler.runtime.app import Daemon
from tests.azure_fake import AllowHttp, AzureFake, StaticCredential, throttle

pytestmark = pytest.mark.looptime

SUB = "00000000-0000-0000-0000-0000000000aa"
BOOT_S = 30.0


class AzureForTests(AzureProvider):
    """The real kind, with the test credential and the http policy (nothing else differs)."""

    clients: ClassVar[list[AzureClient]] = []

    @classmethod
    def client(
        cls, account: AccountSpec, groups: Sequence[ManagedGroup], clock: Clock
    ) -> AccountClient:
        client = AzureClient(account, groups, clock, credential=StaticCredential(),
                             per_call_policies=[AllowHttp()])
        cls.clients.append(client)
        return client


@pytest.fixture
async def fake() -> AsyncIterator[AzureFake]:
    loop = asyncio.get_running_loop()
    fake = AzureFake(SUB, loop.time, boot_time_s=BOOT_S)
    await fake.start()
    fake.add("rg", "chat-spot", priority="Spot")
    fake.add("rg", "chat-od")
    yield fake
    await fake.close()


def config(registries: dict[str, Registry[Any]], fake: AzureFake, policy: str) -> Config:
    """The issue's config shape: an ``azure`` account and two scale-set groups."""
    registries["providers"].register("azure", AzureForTests)
    text = f"""
controller: {{interval: 1s}}
providers:
  az-prod: {{kind: azure, subscription_id: "{SUB}", base_url: "{fake.base_url}"}}
pools:
  - name: chat
    queue: {{kind: memory, name: q-azure}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20, boot_time: 30s}}
    policy: {policy}
    groups:
      - {{name: spot, provider: az-prod, market: spot, hourly_price: 1.2,
          resource_group: rg, vmss: chat-spot}}
      - {{name: od, provider: az-prod, market: on-demand, hourly_price: 4.0,
          resource_group: rg, vmss: chat-od}}
"""
    return parse_config(text, registries=registries)


FIXED_4 = "{kind: fixed, instances: 4}"


def serving(fake: AzureFake, name: str) -> int:
    """VMs that run and are not being deleted, in the fake's own terms."""
    now = fake.clock()
    return sum(1 for vm in fake.get("rg", name).vms
               if vm.deleting_until is None and vm.failure is None and not vm.evicted
               and now >= vm.created_at + fake.boot_time_s)


async def test_a_tick_patches_sku_capacity(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    [tick] = await daemon.loop.tick()
    assert tick.decision is not None and dict(tick.decision.targets) == {"spot": 4, "od": 0}
    await daemon.loop.settle()
    [patch] = fake.writes()
    assert patch.path.endswith("/virtualMachineScaleSets/chat-spot")
    assert patch.body == {"sku": {"name": "Standard_NC24ads_A100_v4", "tier": "Standard",
                                  "capacity": 4}}
    assert fake.get("rg", "chat-spot").capacity == 4
    await asyncio.sleep(1.0)
    [tick] = await daemon.loop.tick()
    spot = tick.fleet.group("spot") if tick.fleet else None
    assert spot is not None and (spot.desired, spot.booting, spot.running) == (4, 4, 0)
    await asyncio.sleep(BOOT_S)
    [tick] = await daemon.loop.tick()
    await daemon.loop.settle()
    spot = tick.fleet.group("spot") if tick.fleet else None
    assert spot is not None and (spot.desired, spot.running) == (4, 4)
    assert len(fake.writes()) == 1  # nothing changed after the first tick: no second PATCH
    await daemon.close(1.0)


@pytest.mark.parametrize("how", ["allocation_failed", "sku_not_available"])
async def test_an_allocation_failure_moves_the_shortfall_within_one_tick(
    registries: dict[str, Registry[Any]], fake: AzureFake, how: str,
) -> None:
    spot = fake.get("rg", "chat-spot")
    if how == "allocation_failed":
        spot.stock = 1  # the PATCH is accepted; three of four launches fail
    else:
        spot.refuse_code = "SkuNotAvailable"  # ARM refuses the PATCH itself
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    with capture_logs() as logs:
        [first] = await daemon.loop.tick()
        assert first.decision is not None
        assert dict(first.decision.targets) == {"spot": 4, "od": 0}
        await daemon.loop.settle()
        await asyncio.sleep(1.0)
        [second] = await daemon.loop.tick()
        await daemon.loop.settle()
    assert second.fleet is not None and second.decision is not None
    state = second.fleet.group("spot")
    assert state is not None and not state.available
    targets = dict(second.decision.targets)
    assert targets["spot"] + targets["od"] == 4 and targets["od"] >= 3
    assert fake.get("rg", "chat-od").capacity == targets["od"]
    if how == "allocation_failed":
        assert "AllocationFailed" in state.reason and state.pending == 3
        assert spot.capacity == targets["spot"]  # the failing launches were withdrawn
    else:
        assert "SkuNotAvailable" in state.reason
        [event] = [e for e in logs if e["event"] == "group_unavailable"]
        assert event["error_class"] == "capacity_unavailable"
    await daemon.close(1.0)


async def test_stockout_and_return_never_dips_below_desired(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    """Spot is out of stock at first: on-demand carries the pool. Stock returns: once the
    hold has passed, capacity moves back to spot, and on-demand is cut only as spot runs."""
    spot = fake.get("rg", "chat-spot")
    spot.stock = 0
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    stop = asyncio.Event()
    samples: list[tuple[float, int, int]] = []

    async def sample() -> None:
        while not stop.is_set():
            samples.append((fake.clock(), serving(fake, "chat-spot"), serving(fake, "chat-od")))
            await asyncio.sleep(1.0)

    t0 = fake.clock()
    runner = asyncio.create_task(daemon.loop.run(stop))
    sampler = asyncio.create_task(sample())
    await asyncio.sleep(120.0)
    assert serving(fake, "chat-od") == 4 and serving(fake, "chat-spot") == 0
    spot.stock = None  # capacity is back
    await asyncio.sleep(600.0)
    stop.set()
    await asyncio.gather(runner, sampler)
    await daemon.close(1.0)
    full = [i for i, (_, s, o) in enumerate(samples) if s + o >= 4]
    assert full, "the pool never reached its desired size"
    dips = [(t - t0, s, o) for t, s, o in samples[full[0]:] if s + o < 4]
    assert not dips, f"serving dipped below desired after reaching it: {dips[:5]}"
    assert (serving(fake, "chat-spot"), serving(fake, "chat-od")) == (4, 0)
    assert fake.get("rg", "chat-od").capacity == 0
    back = [t - t0 for t, s, _ in samples if s == 4]
    assert back and back[0] > 120.0  # the move back waited for the stock and the hold


async def test_a_burst_of_429_is_retried_after_retry_after_without_a_duplicate(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    throttle(fake, "PATCH", times=3, retry_after_s=20)
    with capture_logs() as logs:
        await daemon.loop.tick()
        await daemon.loop.settle()
        for _ in range(5):  # later ticks see the accepted size: nothing more to do
            await asyncio.sleep(1.0)
            await daemon.loop.tick()
            await daemon.loop.settle()
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [r.status for r in patches] == [429, 429, 429, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(patches)]
    assert all(gap >= 20.0 for gap in gaps), gaps  # Retry-After, not the 0.5-1 s first step
    assert len({r.request_id for r in patches}) == 1  # one actuation, retried
    assert fake.get("rg", "chat-spot").capacity == 4 and len(fake.get("rg", "chat-spot").vms) == 4
    classes = [e["error_class"] for e in logs if e["event"] == "resize_failed"]
    assert classes == ["throttled"] * 3
    await daemon.close(1.0)


async def test_a_throttled_describe_skips_the_tick_and_never_resizes_twice(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    await daemon.loop.tick()
    await daemon.loop.settle()
    throttle(fake, "GET", times=6, retry_after_s=5)
    with capture_logs() as logs:
        for _ in range(6):
            await asyncio.sleep(1.0)
            await daemon.loop.tick()
            await daemon.loop.settle()
    assert not fake.faults  # every throttled answer was received by a describe
    errors = [(e["group"], e["error_class"]) for e in logs if e["event"] == "provider_error"]
    assert sorted(errors) == [("od", "throttled"), ("spot", "throttled")]  # once per change
    assert len(fake.writes()) == 1 and fake.get("rg", "chat-spot").capacity == 4
    await daemon.close(1.0)


async def test_spot_eviction_is_visible_and_moves_load(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    await daemon.loop.tick()
    await daemon.loop.settle()
    await asyncio.sleep(BOOT_S + 1)
    fake.evict("rg", "chat-spot", 2)
    with capture_logs() as logs:
        [tick] = await daemon.loop.tick()
        await daemon.loop.settle()
    assert tick.fleet is not None and tick.decision is not None
    state = tick.fleet.group("spot")
    assert state is not None and not state.available and "spot eviction" in state.reason
    # not capacity: out of desired and current, so the core sizes from what can serve
    assert (state.desired, state.running, state.pending, state.draining) == (2, 2, 0, 2)
    [event] = [e for e in logs if e["event"] == "spot_evicted"]
    assert event["evicted"] == 2 and event["group"] == "chat/spot"
    assert tick.decision.targets["od"] >= 2  # the evicted share lands on on-demand
    await daemon.close(1.0)


async def test_evicted_spot_vms_are_deleted_before_the_next_resize(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    """Two of four spot VMs are evicted (Deallocate policy): Azure keeps them, deallocated, in
    the capacity. The load moves to on-demand; once the hold ends it comes back to spot, and
    the resize first deletes the two evicted VMs (Delete Instances, which lowers the capacity
    to 2) and then PATCHes 4: two new VMs launch. A PATCH of 4 alone would launch nothing
    (the capacity is 4 already) and leave the deallocated VMs billed for their disks."""
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    await daemon.loop.tick()
    await daemon.loop.settle()
    await asyncio.sleep(BOOT_S + 1)
    fake.evict("rg", "chat-spot", 2)
    evicted = sorted(str(vm.instance_id) for vm in fake.get("rg", "chat-spot").vms
                     if vm.evicted)
    await daemon.loop.tick()
    await daemon.loop.settle()
    assert not [r for r in fake.requests if r.method == "POST"]  # a describe never deletes
    with capture_logs() as logs:
        for _ in range(240):  # until the hold ends and spot is asked for 4 again
            await asyncio.sleep(1.0)
            await daemon.loop.tick()
            await daemon.loop.settle()
            if serving(fake, "chat-spot") == 4:
                break
    [delete] = [r for r in fake.requests if r.method == "POST"]
    assert delete.path.endswith("/virtualMachineScaleSets/chat-spot/delete")
    assert delete.body == {"instanceIds": evicted} and delete.status == 202
    spot_writes = fake.writes("chat-spot")
    assert spot_writes[-1].body["sku"]["capacity"] == 4 and spot_writes[-1].at >= delete.at
    assert delete.request_id == spot_writes[-1].request_id  # one actuation
    spot = fake.get("rg", "chat-spot")
    assert serving(fake, "chat-spot") == 4 and not any(vm.evicted for vm in spot.vms)
    assert spot.capacity == 4
    [event] = [e for e in logs if e["event"] == "spot_evicted_deleted"]
    assert event["instance_ids"] == evicted
    await daemon.close(1.0)


async def _describe_one(client: AzureClient, gid: GroupId) -> GroupState | ProviderError:
    return (await client.describe([gid]))[gid]


@pytest.mark.parametrize(("status", "code", "expected"), [
    (403, "AuthorizationFailed", Denied),
    (404, "ResourceGroupNotFound", NotFound),
    (500, "InternalServerError", Transient),
    (503, "ServiceUnavailable", Transient),
])
async def test_describe_errors_map_to_the_tree(
    registries: dict[str, Registry[Any]], fake: AzureFake, status: int, code: str,
    expected: type[ProviderError],
) -> None:
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    client = AzureForTests.clients[-1]
    fake.inject("GET", status, code, f"{code} said Azure")  # the resource group's list
    groups = [GroupId("chat", "spot"), GroupId("chat", "od")]
    result = await client.describe(groups)
    for gid in groups:  # one failed list call: each of its groups gets its own error
        error = result[gid]
        assert type(error) is expected and code in str(error) and str(gid) in str(error)
        assert error.__cause__ is not None
    await daemon.close(1.0)


async def test_resize_errors_map_to_the_tree(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    from autoscaler.ports.errors import CapacityUnavailable, Conflict

    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    client = AzureForTests.clients[-1]
    gid = GroupId("chat", "od")
    cases: list[tuple[int, str, str, type[ProviderError]]] = [
        (409, "Conflict", "Operation 'Update' is not allowed: another operation is in progress",
         Conflict),
        (409, "OperationNotAllowed", "Operation could not be completed as it results in "
         "exceeding approved standardNCADSA100v4Family Cores quota.", CapacityUnavailable),
        (409, "ZonalAllocationFailed", "Allocation failed in zone 2.", CapacityUnavailable),
        (409, "OverconstrainedAllocationRequest", "Allocation failed: constraints.",
         CapacityUnavailable),
        (403, "AuthorizationFailed", "does not have authorization to perform action "
         "'Microsoft.Compute/virtualMachineScaleSets/write'", Denied),
        (502, "BadGateway", "upstream", Transient),
    ]
    for status, code, message, expected in cases:
        fake.inject("PATCH", status, code, message)
        with pytest.raises(expected) as raised:
            await client.resize(gid, 1, "r")
        assert raised.value.__cause__ is not None  # chained with from
        assert code in raised.value.message
    await client.resize(GroupId("chat", "od"), 1, "r")
    assert fake.get("rg", "chat-od").capacity == 1
    await daemon.close(1.0)


async def test_no_token_in_any_log_line_or_error(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    token = StaticCredential.token
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    with capture_logs() as logs:
        await daemon.start()
        throttle(fake, "PATCH", times=1, retry_after_s=1)
        fake.inject("GET", 401, "InvalidAuthenticationToken", "The access token is invalid.")
        for _ in range(3):
            await daemon.loop.tick()
            await daemon.loop.settle()
            await asyncio.sleep(1.0)
        client = AzureForTests.clients[-1]
        fake.inject("GET", 403, "AuthorizationFailed", "no")
        errors = [str(await _describe_one(client, GroupId("chat", "spot")))]
    await daemon.close(1.0)
    assert token in fake.tokens  # the token did travel, to the fake only
    assert logs and errors
    assert not [e for e in logs if token in repr(e)]
    assert not [e for e in errors if token in e]


async def test_a_resize_before_any_describe_reads_the_sku_first(
    registries: dict[str, Registry[Any]], fake: AzureFake,
) -> None:
    """The PATCH carries the SKU's name and tier (as ``az vmss scale`` does): a client that
    has not described the group yet GETs it once, under the actuation's request id."""
    daemon = Daemon.build(config(registries, fake, FIXED_4), registries=registries)
    await daemon.start()
    client = AzureForTests.clients[-1]
    await client.resize(GroupId("chat", "od"), 2, "req-7")
    await client.resize(GroupId("chat", "od"), 2, "req-7")  # a retry: the same change
    calls = [(r.method, r.path.rsplit("/", 1)[-1], r.request_id) for r in fake.requests]
    assert calls == [("GET", "chat-od", "req-7"), ("PATCH", "chat-od", "req-7"),
                     ("PATCH", "chat-od", "req-7")]
    assert fake.requests[1].body["sku"]["name"] == "Standard_NC24ads_A100_v4"
    assert fake.get("rg", "chat-od").capacity == 2 and len(fake.get("rg", "chat-od").vms) == 2
    await daemon.close(1.0)
