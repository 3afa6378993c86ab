"""Leader election with real ``autoscaler run`` processes on one lease (the real redis-server).

Each daemon runs a ``local`` group: its instances are its own processes, so "acting" is visible
from outside as ``autoscaler_running_instances`` > 0 on that daemon, and ``autoscaler_leader``
says who holds the lease. Assertions are on observed states, sampled; the deadlines only bound
how long a broken build may hang.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.testing import free_port

CONFIG = """
controller:
  interval: 100ms
  metrics_address: "127.0.0.1:{port}"
  drain_timeout: 5s
  state_store: none
  leader_election: {{url: "{url}", key: "test:lease", ttl: 1s}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "q:chat"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 3, boot_time: 0s}}
    groups:
      - name: local
        provider: local
        command: ["{python}", "-c", "import time; time.sleep(3600)"]
"""


def metrics(port: int) -> dict[str, float] | None:
    """Unlabelled and ``pool="chat"`` samples by name; None while the daemon does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {s.name: float(s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.labels.get("pool", "chat") == "chat" and
            not s.name.endswith(("_bucket", "_created"))}


class Replica:
    def __init__(self, tmp_path: Path, name: str, url: str, *,
                 leader_election: bool = True) -> None:
        self.port = free_port()
        config = tmp_path / f"{name}.yaml"
        text = CONFIG.format(port=self.port, url=url, python=sys.executable)
        if not leader_election:  # each daemon acts alone
            text = "\n".join(line for line in text.splitlines()
                              if "leader_election" not in line)
        config.write_text(text)
        self.log = tmp_path / f"{name}.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL, stderr=err,
            )

    def sample(self) -> dict[str, float] | None:
        return metrics(self.port) if self.proc.poll() is None else None

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def replicas(tmp_path: Path, url: str, n: int) -> Iterator[list[Replica]]:
    started = [Replica(tmp_path, f"d{i}", url) for i in range(n)]
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


def wait_for_one_actor(group: list[Replica], deadline_s: float = 30) -> Replica:
    """Sample every replica until one is the leader with its instance running; at every
    sampled instant at most one replica is leader and no standby runs an instance."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        seen = [(r, r.sample()) for r in group]
        live = [(r, m) for r, m in seen if m is not None]
        leaders = [r for r, m in live if m.get("autoscaler_leader") == 1]
        assert len(leaders) <= 1, "two replicas report leadership at once"
        for r, m in live:
            if r not in leaders:
                assert m.get("autoscaler_running_instances", 0) == 0, "a standby acted"
        if leaders and dict(live)[leaders[0]].get("autoscaler_running_instances") == 1:
            return leaders[0]
        time.sleep(0.05)
    raise AssertionError("no replica became the actor: " + " | ".join(
        r.log.read_text()[-1500:] for r in group))


def test_two_daemons_one_actor_and_failover_after_sigkill(tmp_path: Path, redis_url: str) -> None:
    with replicas(tmp_path, redis_url, 2) as group:
        actor = wait_for_one_actor(group)
        [standby] = [r for r in group if r is not actor]
        for _ in range(20):  # keep sampling while both run: still one actor, standby warm
            wait_for_one_actor(group)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the standby may still be starting: wait for a
            warm = standby.sample()  # tick of its own (only one replica had to be up so far)
            if warm is not None and "autoscaler_desired_instances" in warm:
                break
            time.sleep(0.05)
        assert warm is not None and warm.get("autoscaler_leader") == 0, standby.proc.poll()
        assert warm.get("autoscaler_desired_instances") == 1  # it decides, does not act
        actor.proc.kill()  # SIGKILL: no release; the lease must expire
        actor.proc.wait()
        assert wait_for_one_actor([standby]) is standby
        names = [e["event"] for e in standby.events()]
        assert "leader_acquired" in names
        assert "leader_acquired" in [e["event"] for e in actor.events()]


def test_a_stolen_lease_stops_the_actor(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with replicas(tmp_path, redis_url, 1) as [daemon]:
        assert wait_for_one_actor([daemon]) is daemon
        client.set("test:lease", "thief", px=600_000)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = daemon.sample()
            if m is not None and m.get("autoscaler_leader") == 0:
                break
            time.sleep(0.05)
        lost = [e for e in daemon.events() if e["event"] == "leader_lost"]
        assert lost and lost[0]["reason"] == "lease_taken"
        # A backlog now makes it decide to grow; as a standby it must not carry that out.
        now = time.time()
        client.rpush("q:chat", *[json.dumps({"enqueued_at": now - 30}) for _ in range(50)])
        deadline = time.monotonic() + 30
        decided = None
        while time.monotonic() < deadline:
            decided = daemon.sample()
            if decided is not None and decided.get("autoscaler_desired_instances", 0) > 1:
                break
            time.sleep(0.05)
        assert decided is not None and decided["autoscaler_desired_instances"] > 1
        ticks = decided["autoscaler_tick_duration_seconds_count"]
        while time.monotonic() < deadline:  # ten more ticks with the bigger decision
            later = daemon.sample()
            assert later is not None
            assert later["autoscaler_running_instances"] == 1, "a deposed leader acted"
            if later["autoscaler_tick_duration_seconds_count"] >= ticks + 10:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the daemon stopped ticking")
        assert client.get("test:lease") == b"thief"  # it never overwrote the thief's lease


def log_time(event: dict[str, object]) -> float:
    stamp = str(event["timestamp"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


TTL_S, INTERVAL_S = 1.0, 0.1


def test_three_daemons_one_actor_through_two_sigkilled_actors(
    tmp_path: Path, redis_url: str,
) -> None:
    """Three replicas on one lease; the actor is SIGKILLed, then the next one: at every sampled
    instant at most one replica leads and no standby runs an instance, and each failover (the
    SIGKILL to the next ``leader_acquired``) takes at most the TTL plus one tick."""
    with replicas(tmp_path, redis_url, 3) as group:
        alive = list(group)
        actor = wait_for_one_actor(alive)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every standby up and ticking before the first kill
            warm = [r.sample() for r in alive if r is not actor]
            if all(m is not None and "autoscaler_desired_instances" in m for m in warm):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the standbys never ticked")
        failovers = []
        for _ in range(2):
            for _ in range(10):  # a stretch of steady state: still one actor
                assert wait_for_one_actor(alive) is actor
            killed_at = time.time()
            actor.proc.kill()  # SIGKILL: no release; the lease must expire
            actor.proc.wait()
            alive.remove(actor)
            actor = wait_for_one_actor(alive)
            acquired = [log_time(e) for e in actor.events() if e["event"] == "leader_acquired"]
            assert acquired and acquired[-1] > killed_at
            failovers.append(acquired[-1] - killed_at)
        print(f"\nfailover after SIGKILL (ttl {TTL_S:g} s, interval {INTERVAL_S:g} s): "
              + ", ".join(f"{f:.2f} s" for f in failovers))
        assert all(f <= TTL_S + INTERVAL_S for f in failovers), failovers
        assert len(alive) == 1 and alive[0] is actor
