"""The simulated fleet: instances that boot, serve, drain, get preempted and are billed.

This is the provider side of the simulator. It holds the kernel's slot arrays (instance ``i``
owns slots ``i*S .. i*S+S-1``), reuses the index of a terminated instance, and grows the arrays
when more instances exist at once than fit. What the controller sees of it is a ``GroupState``
per group, like a real provider's describe call, with the contract's meanings
(``autoscaler.core.model.GroupState``; ``autoscaler.testing.conformance`` checks them):
draining and preempted-but-not-yet-gone instances are ``draining``, neither booting nor
running, as with an Auto Scaling group whose terminating instances sit in a lifecycle hook;
launches that failed in a stockout are ``pending``.

Spot preemptions use common random numbers, so that comparing policies on one seed measures
the policies rather than their luck. Each spot group has one Poisson event timeline per
*ordinal*: ordinal ``k`` is the k-th concurrent preemptible slot of the group, and its
timeline comes from the seed, the group's name and ``k`` alone, never from the launch history.
An instance is exposed from its launch until its notice or its termination; while exposed it
holds one ordinal and an event on that ordinal's timeline preempts it. The exposed instances
of a group always hold ordinals ``0 .. n-1``: a launch takes ordinal ``n``, and when the
holder of ``k`` stops being exposed the holder of the last ordinal moves into ``k`` (its next
notice becomes the first event on ``k`` from then on; a Poisson process is memoryless, so each
instance is still preempted at the configured rate per instance-hour). Whether an event
preempts anyone therefore depends only on how many instances are exposed at that instant: two
policies whose spot fleets have the same size over time see the same preemptions, and a
policy running more sees the same ones on the ordinals both use, plus its own on the rest.

Boot times use common random numbers too: the i-th launch at time t boots in ``boot_time`` plus
an offset drawn from the seed, t and i alone, so two policies launching at the same tick wait
the same for their first instances (a provider slow at minute 7 is slow for everyone then),
whatever either launched before.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from autoscaler.config.models import GroupConfig, PoolConfig, StockoutWindow
from autoscaler.core.availability import BootWatch, Holds, overlay
from autoscaler.core.model import FleetState, GroupState, scale_in_key
from autoscaler.simulations import kernel
from autoscaler.simulations.kernel import F64, I8, I64
from autoscaler.simulations.preemptions import Ordinals, Preemption


@dataclass(slots=True)
class Instance:
    index: int
    group: int
    launched: float
    ready: float
    uid: int = 0
    ordinal: int = -1
    """Preemption ordinal held while exposed to preemption (-1: none, or released)."""
    notice_at: float = math.inf
    """The pending notice; an older one still in the event heap is stale (ordinal moved)."""
    draining: bool = False
    ends: float = math.inf
    """Known termination time once draining (last in-flight request done) or preempted."""


@dataclass(slots=True)
class Usage:
    """One instance's billed lifetime."""

    group: int
    launched: float
    ended: float


@dataclass(slots=True)
class GroupRuntime:
    config: GroupConfig
    desired: int = 0
    launch_failures: int = 0
    preemptions: int = 0
    members: set[int] = field(default_factory=set)
    ordinals: Ordinals | None = None
    """Preemption timelines; None when the group is never preempted."""
    stocked_out: StockoutWindow | None = None
    """The stockout window a launch has failed in, once one has: what the provider knows."""

    def stall_end(self, t: float) -> float | None:
        """The end of the boot-stall window ``t`` falls in, if any."""
        for window in self.config.simulation.boot_stalls:
            if window.start <= t < window.end:
                return float(window.end)
        return None

    def stockout(self, t: float) -> StockoutWindow | None:
        """The configured window ``t`` falls in, if any: launches fail inside it."""
        for window in self.config.simulation.stockouts:
            if window.start <= t < window.end:
                return window
        return None

    def available(self, t: float) -> bool:
        """What the provider reports, like a real one: a stockout shows only once a launch has
        failed in it (so the fleet finds out by trying, and the failure is counted), and lasts
        until the window ends (the cloud keeps retrying in the background and gets capacity
        back then)."""
        if self.stocked_out is not None:
            if t < self.stocked_out.end:
                return False
            self.stocked_out = None
        return True


_BOOT_STREAM = 0xB007  # keeps boot draws apart from other streams of the same seed


class SimFleet:
    """Instances of one pool's groups plus the kernel state they share with the queue."""

    def __init__(self, pool: PoolConfig, seed: int) -> None:
        self.slots = pool.capacity.slots_per_instance
        self.boot_time = pool.capacity.boot_time
        self.boot_spread = pool.capacity.boot_time_spread
        self.seed = seed
        self._launches_at: tuple[float, int] = (math.nan, 0)  # (time, launches so far at it)
        self.groups = [GroupRuntime(g) for g in pool.groups]
        for runtime in self.groups:
            rate = runtime.config.simulation.preemptions_per_hour
            if rate > 0:
                runtime.ordinals = Ordinals(rate, seed, runtime.config.name)
        self.preempted: list[Preemption] = []
        # The daemon's view of availability, shared code: capacity holds with their backoff
        # and the boot watchdog (``autoscaler.core.availability``), keyed by group name.
        self.holds: Holds[str] = Holds()
        timeout = pool.capacity.boot_timeout_s
        self.watch: BootWatch[str] | None = BootWatch(timeout) if timeout is not None else None
        self.boot_timeouts = 0
        self.instances: dict[int, Instance] = {}
        self.by_uid: dict[int, Instance] = {}
        self.free: list[int] = []
        self.usage: list[Usage] = []
        self.events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, instance uid)
        self._seq = 0
        self.dirty = True
        cap = max(4, pool.capacity.max + 2)
        self.accept: I8 = np.zeros(cap, dtype=np.int8)
        self.ready: F64 = np.zeros(cap)
        self.slot_until: F64 = np.zeros(cap * self.slots)
        self.slot_req: I64 = np.full(cap * self.slots, -1, dtype=np.int64)
        self.heap_t: F64 = np.zeros(cap * self.slots)
        self.heap_s: I64 = np.zeros(cap * self.slots, dtype=np.int64)
        self.rq_id: I64 = np.zeros(max(64, cap * self.slots), dtype=np.int64)
        self.rq_t: F64 = np.zeros(self.rq_id.shape[0])
        self.ist: I64 = np.zeros(kernel.N_SCALARS, dtype=np.int64)
        self.free = list(range(cap - 1, -1, -1))

    # ------------------------------------------------------------------ capacity of the arrays

    def _grow(self) -> None:
        old = self.accept.shape[0]
        cap = old * 2
        s = self.slots
        self.accept = np.concatenate([self.accept, np.zeros(old, dtype=np.int8)])
        self.ready = np.concatenate([self.ready, np.zeros(old)])
        self.slot_until = np.concatenate([self.slot_until, np.zeros(old * s)])
        self.slot_req = np.concatenate([self.slot_req, np.full(old * s, -1, dtype=np.int64)])
        self.heap_t = np.zeros(cap * s)
        self.heap_s = np.zeros(cap * s, dtype=np.int64)
        self.free.extend(range(cap - 1, old - 1, -1))
        self.dirty = True

    def _reserve_requeue(self, extra: int) -> None:
        """Grow the re-queue ring (linearised) so ``extra`` more entries fit."""
        cap = self.rq_id.shape[0]
        count = int(self.ist[kernel.RQ_COUNT])
        if count + extra <= cap:
            return
        order = (int(self.ist[kernel.RQ_HEAD]) + np.arange(count)) % cap
        new_cap = max(2 * cap, count + extra)
        ids = np.zeros(new_cap, dtype=np.int64)
        times = np.zeros(new_cap)
        ids[:count] = self.rq_id[order]
        times[:count] = self.rq_t[order]
        self.rq_id, self.rq_t = ids, times
        self.ist[kernel.RQ_HEAD] = 0

    # ------------------------------------------------------------------ lifecycle

    def _boot_offset(self, t: float) -> float:
        """Uniform in ±spread, from (seed, t, launches already made at t): see the module doc."""
        at, count = self._launches_at
        count = count + 1 if at == t else 0
        self._launches_at = (t, count)
        key = [self.seed, _BOOT_STREAM, round(t * 1000), count]
        return float(np.random.default_rng(key).uniform(-self.boot_spread, self.boot_spread))

    def launch(self, group: int, t: float, warm: bool = False) -> bool:
        """Start one instance; fails (False) while the group is stocked out."""
        runtime = self.groups[group]
        window = None if warm else runtime.stockout(t)
        if window is not None:
            runtime.launch_failures += 1
            runtime.stocked_out = window
            return False
        if not self.free:
            self._grow()
        index = self.free.pop()
        boot = 0.0 if warm else self.boot_time
        if not warm and self.boot_spread > 0:
            boot += self._boot_offset(t)
        stall = None if warm else runtime.stall_end(t)
        if stall is not None:
            boot += stall - t  # comes up a boot after the stall ends
        self._seq += 1
        inst = Instance(index, group, t, t + boot, uid=self._seq)
        self.instances[index] = inst
        self.by_uid[inst.uid] = inst
        runtime.members.add(index)
        s = self.slots
        self.accept[index] = 1
        self.ready[index] = inst.ready
        self.slot_until[index * s : (index + 1) * s] = 0.0
        self.slot_req[index * s : (index + 1) * s] = -1
        if runtime.ordinals is not None:
            self._expose(inst, runtime.ordinals.take(inst.uid), t)
        self.dirty = True
        return True

    def _expose(self, inst: Instance, ordinal: int, t: float) -> None:
        """``inst`` holds ``ordinal`` from ``t``: its notice is that timeline's next event."""
        ordinals = self.groups[inst.group].ordinals
        assert ordinals is not None
        inst.ordinal = ordinal
        inst.notice_at = ordinals.next_event(ordinal, t)
        self._schedule(inst.notice_at, "notice", inst.uid)

    def _release_ordinal(self, inst: Instance, t: float) -> None:
        """``inst`` stops being exposed at ``t``; the last ordinal's holder moves into its."""
        ordinals = self.groups[inst.group].ordinals
        if inst.ordinal < 0 or ordinals is None:
            return
        k, inst.ordinal, inst.notice_at = inst.ordinal, -1, math.inf
        moved = ordinals.release(k)
        if moved is None:
            return
        if math.isfinite(t):
            self._expose(self.by_uid[moved], k, t)
        else:  # the run is over (``close``): keep the books straight, no more notices
            self.by_uid[moved].ordinal = k

    def _schedule(self, at: float, kind: str, uid: int) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, uid))

    def busy(self, index: int, t: float) -> int:
        s = self.slots
        until = self.slot_until[index * s : (index + 1) * s]
        req = self.slot_req[index * s : (index + 1) * s]
        return int(np.count_nonzero((until > t) & (req >= 0)))

    def drain(self, index: int, t: float) -> None:
        """Stop giving the instance work; it ends when its in-flight requests are done."""
        inst = self.instances[index]
        inst.draining = True
        self.accept[index] = 0
        self.dirty = True
        if inst.ready > t:
            inst.ends = t  # cancel a boot: nothing to finish
        else:
            s = self.slots
            until = self.slot_until[index * s : (index + 1) * s]
            inst.ends = max(t, float(until.max()))
        if inst.ordinal >= 0:  # exposed until it is gone: stop exactly then
            if inst.ends > t:
                self._schedule(inst.ends, "release", inst.uid)
            else:
                self._release_ordinal(inst, t)

    def live(self, kind: str, uid: int, t: float) -> bool:
        """Whether a spot event still has an effect: not if its instance is already gone, if a
        notice finds it ending at this very instant or is stale (its ordinal moved), or if a
        release finds it no longer exposed. The loop skips dead events without stopping the
        kernel at them."""
        inst = self.by_uid.get(uid)
        if inst is None or inst.ends < t:
            return False
        if kind == "notice":
            return inst.ends != t and inst.notice_at == t
        if kind == "release":
            return inst.ordinal >= 0
        return True

    def handle(self, kind: str, uid: int, t: float, done: F64) -> None:
        """A spot event: ``notice`` drains the instance now and schedules the ``kill``, which
        re-queues whatever is still in flight when the notice runs out; ``release`` ends a
        draining instance's exposure to preemption when its last request is done."""
        if not self.live(kind, uid, t):
            return
        inst = self.by_uid[uid]
        if kind == "release":
            self._release_ordinal(inst, t)
            return
        if kind == "notice":
            runtime = self.groups[inst.group]
            runtime.preemptions += 1
            self.preempted.append(Preemption(t, runtime.config.name, inst.ordinal, uid))
            self._release_ordinal(inst, t)
            self.drain(inst.index, t)
            kill_at = t + self.groups[inst.group].config.simulation.preemption_notice
            if inst.ends > kill_at:
                inst.ends = kill_at
                self._schedule(kill_at, "kill", uid)
            return
        self._reserve_requeue(self.slots)
        kernel.preempt(
            inst.index, t, self.slots, self.slot_until, self.slot_req, done,
            self.ist, self.rq_id, self.rq_t,
        )
        inst.ends = t

    def reap(self, t: float) -> None:
        """Bill and forget every instance whose end time has come."""
        for index in [i for i, inst in self.instances.items() if inst.ends <= t]:
            inst = self.instances[index]
            self._release_ordinal(inst, t)  # normally done already, at its exact end
            del self.instances[index]
            self.by_uid.pop(inst.uid, None)
            self.groups[inst.group].members.discard(index)
            self.usage.append(Usage(inst.group, inst.launched, inst.ends))
            s = self.slots
            self.slot_req[index * s : (index + 1) * s] = -1
            self.accept[index] = 0
            self.free.append(index)

    def close(self, t: float) -> None:
        """End of the run: everything still alive is billed up to ``t``."""
        for inst in self.instances.values():
            inst.ends = min(inst.ends, t) if inst.draining else t
        self.reap(math.inf)

    def sync_heap(self) -> None:
        if self.dirty:
            kernel.rebuild_heap(
                self.accept, self.ready, self.slots, self.slot_until,
                self.heap_t, self.heap_s, self.ist,
            )
            self.dirty = False

    # ------------------------------------------------------------------ what a provider reports

    def counts(self, group: int, t: float) -> tuple[int, int, int]:
        """(booting, running, draining) instances of a group at ``t``."""
        booting = running = draining = 0
        for index in self.groups[group].members:
            inst = self.instances[index]
            if inst.draining:
                draining += 1
            elif inst.ready > t:
                booting += 1
            else:
                running += 1
        return booting, running, draining

    def state(self, t: float) -> FleetState:
        groups = []
        for g, runtime in enumerate(self.groups):
            booting, running, draining = self.counts(g, t)
            available = runtime.available(t)
            groups.append(
                GroupState(
                    name=runtime.config.name,
                    market=runtime.config.market,
                    desired=runtime.desired,
                    booting=booting,
                    running=running,
                    available=available,
                    draining=draining,
                    pending=max(0, runtime.desired - booting - running),
                    reason="" if available else "stockout: launches fail",
                )
            )
        return FleetState(tuple(groups))

    def view(self, t: float) -> FleetState:
        """What the controller decides on: ``state`` with the capacity holds laid over, as the
        daemon's loop does (a group that reports failed launches, or whose instances stay
        booting past ``capacity.boot_timeout``, is held unavailable with the 60 s doubling
        backoff)."""
        raw = self.state(t)
        fleet, marked = overlay([(g.name, g) for g in raw.groups], t, self.holds, self.watch)
        self.boot_timeouts += sum(1 for m in marked if m.cause == "boot_timeout")
        return fleet

    # ------------------------------------------------------------------ actuation

    def actuate(self, targets: Mapping[str, int], t: float) -> bool:
        """Set every group's desired size and reconcile; True when a group that was available
        had a launch fail just now (the engine then moves its shortfall in the same tick, as
        the daemon does on a refused resize)."""
        failed = False
        for g, runtime in enumerate(self.groups):
            runtime.desired = int(targets.get(runtime.config.name, runtime.desired))
            before = runtime.stocked_out
            self.reconcile(g, t)
            failed = failed or (before is None and runtime.stocked_out is not None)
        return failed

    def reconcile(self, group: int, t: float) -> None:
        """Move the group towards its desired size, as an Auto Scaling group would.

        Scale-in follows the product's one victim order (``scale_in_key``: booting first,
        latest boot first, then the newest running) and drains victims rather than killing
        work.
        """
        runtime = self.groups[group]
        active = [self.instances[i] for i in runtime.members if not self.instances[i].draining]
        gap = runtime.desired - len(active)
        for _ in range(gap):
            if not self.launch(group, t):
                break
        if gap < 0:
            ranked = sorted(active, key=lambda i: scale_in_key(i.ready > t, i.ready, i.launched,
                                                               i.uid))
            for inst in ranked[: -gap]:
                self.drain(inst.index, t)
