"""The simulated fleet: instances that boot, serve, drain, get preempted and are billed.

This is the provider side of the simulator. It holds the kernel's slot arrays (instance ``i``
owns slots ``i*S .. i*S+S-1``), reuses the index of a terminated instance, and grows the arrays
when more instances exist at once than fit. What the controller sees of it is a ``GroupState``
per group, like a real provider's describe call: draining and preempted-but-not-yet-gone
instances count as neither booting nor running, as with an Auto Scaling group whose
terminating instances sit in a lifecycle hook.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from autoscaler.config import GroupConfig, PoolConfig
from autoscaler.core.model import FleetState, GroupState
from simulations import kernel
from simulations.kernel import F64, I8, I64


@dataclass(slots=True)
class Instance:
    index: int
    group: int
    launched: float
    ready: float
    uid: int = 0
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

    def available(self, t: float) -> bool:
        return not any(w.start <= t < w.end for w in self.config.simulation.stockouts)


class SimFleet:
    """Instances of one pool's groups plus the kernel state they share with the queue."""

    def __init__(self, pool: PoolConfig, n_requests: int, rng: np.random.Generator) -> None:
        self.slots = pool.capacity.slots_per_instance
        self.boot_time = pool.capacity.boot_time
        self.boot_spread = pool.capacity.boot_time_spread
        self.rng = rng
        self.groups = [GroupRuntime(g) for g in pool.groups]
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

    def launch(self, group: int, t: float, warm: bool = False) -> bool:
        """Start one instance; fails (False) while the group is stocked out."""
        runtime = self.groups[group]
        if not warm and not runtime.available(t):
            runtime.launch_failures += 1
            return False
        if not self.free:
            self._grow()
        index = self.free.pop()
        boot = 0.0 if warm else self.boot_time
        if not warm and self.boot_spread > 0:
            boot += float(self.rng.uniform(-self.boot_spread, self.boot_spread))
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
        rate = runtime.config.simulation.preemptions_per_hour
        if rate > 0:
            notice_at = t + float(self.rng.exponential(3600.0 / rate))
            self._schedule(notice_at, "notice", inst.uid)
        self.dirty = True
        return True

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

    def handle(self, kind: str, uid: int, t: float, done: F64) -> None:
        """A spot event: ``notice`` drains the instance now and schedules the ``kill``, which
        re-queues whatever is still in flight when the notice runs out."""
        inst = self.by_uid.get(uid)
        if inst is None or inst.ends < t or (kind == "notice" and inst.ends == t):
            return
        if kind == "notice":
            self.groups[inst.group].preemptions += 1
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
            inst = self.instances.pop(index)
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
            booting, running, _ = self.counts(g, t)
            groups.append(
                GroupState(
                    name=runtime.config.name,
                    market=runtime.config.market,
                    desired=runtime.desired,
                    booting=booting,
                    running=running,
                    available=runtime.available(t),
                )
            )
        return FleetState(tuple(groups))

    # ------------------------------------------------------------------ actuation

    def reconcile(self, group: int, t: float) -> None:
        """Move the group towards its desired size, as an Auto Scaling group would.

        Scale-in removes booting instances first (latest boot first), then the least-loaded
        running ones (idle ones have zero load), and drains them rather than killing work.
        """
        runtime = self.groups[group]
        active = [self.instances[i] for i in runtime.members if not self.instances[i].draining]
        gap = runtime.desired - len(active)
        for _ in range(gap):
            if not self.launch(group, t):
                break
        if gap < 0:
            booting = sorted((i for i in active if i.ready > t), key=lambda i: -i.ready)
            running = sorted(
                (i for i in active if i.ready <= t), key=lambda i: (self.busy(i.index, t), i.index)
            )
            for inst in (booting + running)[: -gap]:
                self.drain(inst.index, t)
