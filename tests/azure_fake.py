"""A local HTTP fake of Azure Resource Manager's ``Microsoft.Compute/virtualMachineScaleSets``,
for driving the REAL azure-mgmt-compute aio client in tests.

It follows the published REST shapes (api-version query parameter required, bearer token
required, ARM error bodies ``{"error": {"code", "message"}}``, paged lists with ``nextLink``,
a PATCH answered 200 with the scale set and an ``Azure-AsyncOperation`` header whose URL
answers ``{"status": ...}``), and models what the adapter reads: ``sku.capacity``, VMs that are
``Creating`` until ``boot_time_s`` has passed on the given clock, then ``Succeeded`` +
``PowerState/running``; scale-in marks the highest instance ids ``Deleting`` (Azure's default
scale-in policy) for ``drain_s``; launches beyond a scale set's ``stock`` fail with
``ProvisioningState/failed/AllocationFailed``; Spot evictions (``Deallocate`` policy) leave VMs
``PowerState/deallocated`` (counted in the capacity, as Azure does) until a Delete Instances
``POST .../delete`` removes them and lowers the capacity. Faults (429 with ``Retry-After``,
5xx, 409...) are injected per method. Binds 127.0.0.1 on a free port, in the test's own event loop.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

ALLOCATION_FAILED = ("AllocationFailed",
                     "Allocation failed. We do not have sufficient capacity for the requested VM "
                     "size in this region. Read more about improving likelihood of allocation "
                     "success at http://aka.ms/allocation-guidance")
THROTTLED_MESSAGE = ("The server rejected the request because too many requests have been "
                     "received for this subscription.")


class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Tests only: lets azure-core send the bearer token to the plain-http fake."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


class StaticCredential:
    """A fixed token: what a test needs to satisfy the SDK's bearer policy. The token is
    a recognisable string so that tests can assert it never reaches a log line or error."""

    token = "tok-SECRET-never-log-3f9c"

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@dataclass
class FakeVm:
    instance_id: int
    created_at: float
    failure: tuple[str, str] | None = None
    deleting_until: float | None = None
    evicted: bool = False


@dataclass
class FakeScaleSet:
    resource_group: str
    name: str
    priority: str = "Regular"
    sku_name: str = "Standard_NC24ads_A100_v4"
    capacity: int = 0
    stock: int | None = None
    refuse_code: str | None = None
    vms: list[FakeVm] = field(default_factory=list)
    next_id: int = 0


@dataclass
class Fault:
    method: str
    status: int
    code: str
    message: str
    headers: dict[str, str]


@dataclass
class Recorded:
    method: str
    path: str
    request_id: str
    body: Any
    at: float
    status: int = 0


class AzureFake:
    """The fake ARM endpoint; ``base_url`` once started."""

    def __init__(self, subscription: str, clock: Callable[[], float], *, boot_time_s: float,
                 drain_s: float = 0.0, location: str = "eastus", page_size: int = 2) -> None:
        self.subscription = subscription
        self.clock = clock
        self.boot_time_s = boot_time_s
        self.drain_s = drain_s
        self.location = location
        self.page_size = page_size
        self.resource_groups: set[str] = set()
        self.scale_sets: dict[tuple[str, str], FakeScaleSet] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.tokens: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- test controls

    def add(self, resource_group: str, name: str, **kwargs: Any) -> FakeScaleSet:
        self.resource_groups.add(resource_group.lower())
        ss = FakeScaleSet(resource_group, name, **kwargs)
        self.scale_sets[(resource_group.lower(), name.lower())] = ss
        return ss

    def get(self, resource_group: str, name: str) -> FakeScaleSet:
        return self.scale_sets[(resource_group.lower(), name.lower())]

    def inject(self, method: str, status: int, code: str, message: str = "injected",
               headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next ``times`` requests with ``method`` get this ARM error."""
        self.faults.extend(Fault(method, status, code, message, headers or {})
                           for _ in range(times))

    def evict(self, resource_group: str, name: str, count: int) -> None:
        """Spot eviction with the Deallocate policy: the newest running VMs are deallocated."""
        ss = self.get(resource_group, name)
        live = [vm for vm in ss.vms if vm.deleting_until is None and vm.failure is None
                and not vm.evicted]
        for vm in sorted(live, key=lambda v: -v.instance_id)[:count]:
            vm.evicted = True

    def writes(self, name: str | None = None) -> list[Recorded]:
        """Answered PATCHes (of scale set ``name``), in order."""
        return [r for r in self.requests if r.method == "PATCH" and r.status == 200
                and (name is None or r.path.lower().endswith("/" + name.lower()))]

    # ---------------------------------------------------------------- server

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status,
                                 headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        record = Recorded(request.method, request.path,
                          request.headers.get("x-ms-client-request-id", ""), body, self.clock())
        self.requests.append(record)
        response = self._route(request, body)
        record.status = response.status
        return response

    def _route(self, request: web.Request, body: Any) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(401, "AuthenticationFailed", "Authentication failed. The "
                               "'Authorization' header is missing.")
        self.tokens.add(auth.removeprefix("Bearer "))
        if "api-version" not in request.query:
            return self._error(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required.")
        for fault in self.faults:
            if fault.method == request.method:
                self.faults.remove(fault)
                return self._error(fault.status, fault.code, fault.message, fault.headers)
        parts = [p for p in request.path.split("/") if p]
        if len(parts) < 2 or parts[0].lower() != "subscriptions" or parts[1] != self.subscription:
            return self._error(404, "SubscriptionNotFound",
                               f"The subscription '{parts[1] if len(parts) > 1 else ''}' "
                               "could not be found.")
        lower = [p.lower() for p in parts]
        if lower[2:4] == ["providers", "microsoft.compute"] and "operations" in lower:
            return web.json_response({"name": parts[-1], "status": "Succeeded",
                                      "startTime": "2026-01-01T00:00:00Z"})
        if len(parts) < 7 or lower[2] != "resourcegroups" or lower[4:7] != [
            "providers", "microsoft.compute", "virtualmachinescalesets"
        ]:
            return self._error(404, "InvalidResourceType", f"no route {request.path}")
        rg = parts[3]
        if rg.lower() not in self.resource_groups:
            return self._error(404, "ResourceGroupNotFound",
                               f"Resource group '{rg}' could not be found.")
        if len(parts) == 7 and request.method == "GET":
            return self._page(request, [self._vmss_json(s) for (g, _), s in
                                        sorted(self.scale_sets.items()) if g == rg.lower()])
        ss = self.scale_sets.get((rg.lower(), parts[7].lower()))
        if ss is None:
            return self._error(404, "ResourceNotFound",
                               f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/"
                               f"{parts[7]}' under resource group '{rg}' was not found.")
        self._purge(ss)
        if len(parts) == 8 and request.method == "GET":
            return web.json_response(self._vmss_json(ss))
        if len(parts) == 8 and request.method == "PATCH":
            return self._patch(ss, body)
        if len(parts) == 9 and lower[8] == "delete" and request.method == "POST":
            return self._delete_instances(ss, body)
        if len(parts) == 9 and lower[8] == "virtualmachines" and request.method == "GET":
            expand = request.query.get("$expand") == "instanceView"
            return self._page(request, [self._vm_json(ss, vm, expand) for vm in ss.vms])
        return self._error(405, "MethodNotAllowed", f"{request.method} {request.path}")

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        skip = int(request.query.get("$skiptoken", "0"))
        page: dict[str, Any] = {"value": items[skip:skip + self.page_size]}
        if skip + self.page_size < len(items):
            url = request.url.update_query({"$skiptoken": str(skip + self.page_size)})
            page["nextLink"] = str(url)
        return web.json_response(page)

    def _patch(self, ss: FakeScaleSet, body: Any) -> web.Response:
        sku = body.get("sku") if isinstance(body, dict) else None
        capacity = sku.get("capacity") if isinstance(sku, dict) else None
        if not isinstance(capacity, int) or capacity < 0:
            return self._error(400, "InvalidParameter", "sku.capacity must be >= 0")
        if isinstance(sku, dict) and sku.get("name") not in (None, ss.sku_name):
            return self._error(409, "PropertyChangeNotAllowed", "Changing property "
                               "'sku.name' is not allowed on a scale set with VMs.")
        if ss.refuse_code is not None and capacity > ss.capacity:
            return self._error(409, ss.refuse_code, f"The requested size {ss.sku_name} is "
                               f"currently not available in location '{self.location}'.")
        now = self.clock()
        live = [vm for vm in ss.vms if vm.deleting_until is None]
        for _ in range(capacity - len(live)):
            allocated = sum(1 for vm in ss.vms if vm.failure is None and not vm.evicted)
            failed = ss.stock is not None and allocated >= ss.stock
            ss.vms.append(FakeVm(ss.next_id, now, ALLOCATION_FAILED if failed else None))
            ss.next_id += 1
        for vm in sorted(live, key=lambda v: -v.instance_id)[:max(0, len(live) - capacity)]:
            vm.deleting_until = now + self.drain_s
        ss.capacity = capacity
        self._purge(ss)
        return web.json_response(self._vmss_json(ss, "Updating"),
                                 headers={"Azure-AsyncOperation": self._operation_url()})

    def _delete_instances(self, ss: FakeScaleSet, body: Any) -> web.Response:
        """``POST .../virtualMachineScaleSets/{vmss}/delete`` (Delete Instances): the listed
        VMs start deleting and the capacity drops by their number; 202 and an async operation."""
        ids = body.get("instanceIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            return self._error(400, "InvalidParameter", "instanceIds is required.")
        now = self.clock()
        doomed = [vm for vm in ss.vms
                  if str(vm.instance_id) in {str(i) for i in ids} and vm.deleting_until is None]
        for vm in doomed:
            vm.deleting_until = now + self.drain_s
        ss.capacity = max(0, ss.capacity - len(doomed))
        self._purge(ss)
        return web.Response(status=202, headers={"Azure-AsyncOperation": self._operation_url(),
                                                 "Location": self._operation_url()})

    def _operation_url(self) -> str:
        return (f"{self.base_url}/subscriptions/{self.subscription}/providers/"
                f"Microsoft.Compute/locations/{self.location}/operations/{uuid.uuid4()}"
                "?api-version=2024-07-01")

    def _purge(self, ss: FakeScaleSet) -> None:
        now = self.clock()
        ss.vms = [vm for vm in ss.vms if vm.deleting_until is None or (
            now < vm.deleting_until or math.isinf(vm.deleting_until))]

    def _vmss_json(self, ss: FakeScaleSet, state: str = "Succeeded") -> dict[str, Any]:
        profile: dict[str, Any] = {"priority": ss.priority}
        if ss.priority == "Spot":
            profile |= {"evictionPolicy": "Deallocate", "billingProfile": {"maxPrice": -1}}
        return {
            "name": ss.name, "type": "Microsoft.Compute/virtualMachineScaleSets",
            "id": f"/subscriptions/{self.subscription}/resourceGroups/{ss.resource_group}"
                  f"/providers/Microsoft.Compute/virtualMachineScaleSets/{ss.name}",
            "location": self.location,
            "sku": {"name": ss.sku_name, "tier": "Standard", "capacity": ss.capacity},
            "properties": {
                "provisioningState": state, "orchestrationMode": "Uniform",
                "upgradePolicy": {"mode": "Manual"}, "singlePlacementGroup": False,
                "virtualMachineProfile": profile,
            },
        }

    def _vm_json(self, ss: FakeScaleSet, vm: FakeVm, expand: bool) -> dict[str, Any]:
        now = self.clock()
        if vm.deleting_until is not None:
            provisioning, statuses = "Deleting", [("ProvisioningState/deleting", ""),
                                                  ("PowerState/running", "")]
        elif vm.failure is not None:
            provisioning = "Failed"
            statuses = [(f"ProvisioningState/failed/{vm.failure[0]}", vm.failure[1])]
        elif vm.evicted:
            provisioning, statuses = "Succeeded", [("ProvisioningState/succeeded", ""),
                                                   ("PowerState/deallocated", "")]
        elif now < vm.created_at + self.boot_time_s:
            provisioning, statuses = "Creating", [("ProvisioningState/creating", ""),
                                                  ("PowerState/starting", "")]
        else:
            provisioning, statuses = "Succeeded", [("ProvisioningState/succeeded", ""),
                                                   ("PowerState/running", "")]
        properties: dict[str, Any] = {"latestModelApplied": True,
                                      "provisioningState": provisioning}
        if expand:
            properties["instanceView"] = {"statuses": [
                {"code": code, "level": "Error" if "failed" in code else "Info",
                 "displayStatus": code.split("/")[1], **({"message": msg} if msg else {})}
                for code, msg in statuses]}
        return {
            "name": f"{ss.name}_{vm.instance_id}", "instanceId": str(vm.instance_id),
            "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
            "id": f"/subscriptions/{self.subscription}/resourceGroups/{ss.resource_group}"
                  f"/providers/Microsoft.Compute/virtualMachineScaleSets/{ss.name}"
                  f"/virtualMachines/{vm.instance_id}",
            "location": self.location,
            "sku": {"name": ss.sku_name, "tier": "Standard"},
            "properties": properties,
        }


def throttle(fake: AzureFake, method: str, times: int, retry_after_s: int) -> None:
    """ARM's compute throttling answer, as Azure sends it (429 + Retry-After)."""
    fake.inject(method, 429, "OperationNotAllowed", THROTTLED_MESSAGE,
                {"Retry-After": str(retry_after_s)}, times=times)
