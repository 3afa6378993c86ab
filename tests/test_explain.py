"""``autoscaler explain`` against a real redis-server: one dry-run tick, each policy term, the
guards and cross-pool steps that changed the count, the allocation and why; never resizes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from autoscaler.testing import free_port

CONFIG = """
controller:
  interval: 1s
  metrics_address: "127.0.0.1:{port}"
  state_store: {{url: "{url}", prefix: "ex:"}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: explain-q}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 20}}
    policy: {{kind: threshold}}
    budget: {{monthly_usd: {monthly}, hard_cap: true}}
    groups:
      - {{name: spot, provider: local, market: spot, hourly_price: 1.0, max: 2,
          command: [sleep, "600"]}}
      - {{name: od, provider: local, hourly_price: 3.0, command: [sleep, "600"]}}
  - name: batch
    queue: {{kind: redis-list, url: "{url}", key: explain-b}}
    sla: {{max_wait: 60s}}
    capacity: {{min: 0, max: 2}}
    groups: [{{name: g, provider: local, command: [sleep, "600"]}}]
"""


def explain(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", "explain", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=60)


def write(tmp_path: Path, url: str, monthly: float = 1e6) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(CONFIG.format(port=free_port(), url=url, monthly=monthly))
    return path


def test_explain_shows_terms_guards_and_allocation(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    client.lpush("explain-q", *[json.dumps({"id": i, "enqueued_at": now - 5}) for i in range(50)])
    path = write(tmp_path, redis_url)
    result = explain(path, "--pool", "chat", "--json")
    assert result.returncode == 0, result.stderr
    [pool] = json.loads(result.stdout)["pools"]
    assert pool["pool"] == "chat" and pool["observation"]["depth"] == 50
    assert pool["observation"]["oldest_wait_s"] >= 5
    assert pool["policy"]["desired"] == 50 and pool["policy"]["terms"]["metric"] == 50
    assert pool["guards"] == ["scale-up limited to 4"]  # HPA's default: +4 from nothing
    assert pool["guard_terms"] == {"recommended": 50, "stabilized": 50}
    assert pool["decision"]["desired"] == 4 and pool["decision"]["would_act"]
    spot, od = pool["allocation"]
    assert (spot["target"], od["target"]) == (2, 2)
    assert spot["why"] == "full at its max 2; preference 1 of 2 (spot, $1/h)"
    assert od["why"] == "preference 2 of 2 (on-demand, $3/h)"
    # Never actuated, and read-only: the store holds the queue only, no state was saved.
    assert sorted(k.decode() for k in client.keys("*")) == ["explain-q"]

    text = explain(path)  # every pool, for a person
    assert text.returncode == 0, text.stderr
    assert "pool chat" in text.stdout and "pool batch" in text.stdout
    assert "policy threshold recommends 50: demand 50 / 1 per instance" in text.stdout
    assert "guards (min 0, max 20): scale-up limited to 4" in text.stdout
    assert "decision: 0 -> 4 (up), would resize" in text.stdout
    assert all(len(line) <= 80 for line in text.stdout.splitlines())
    client.close()


def test_explain_shows_the_budget_cap_and_a_pause(tmp_path: Path, redis_url: str) -> None:
    """$100 a month pays about 13 cents an hour for the rest of it: no instance fits."""
    client = redis.Redis.from_url(redis_url)
    client.lpush("explain-q", *[json.dumps({"id": i, "enqueued_at": time.time()})
                                for i in range(10)])
    path = write(tmp_path, redis_url, monthly=100)
    assert subprocess.run([sys.executable, "-m", "autoscaler", "pause", "chat", "-c", str(path)],
                          capture_output=True, timeout=60).returncode == 0
    result = explain(path, "--pool", "chat", "--json")
    [pool] = json.loads(result.stdout)["pools"]
    assert pool["paused"] is True
    assert pool["cross_pool"] == ["budget: scale-out held at 0 (wanted 4)"]
    assert pool["decision"]["desired"] == 0 and not pool["decision"]["would_act"]
    [budget] = pool["budget"]
    assert budget["scope"] == "pool:chat" and budget["allowance_usd_per_h"] < 1.0
    text = explain(path, "--pool", "chat")
    assert "PAUSED" in text.stdout and "budget: scale-out held at 0" in text.stdout
    client.close()


def test_explain_says_what_it_could_not_sample(tmp_path: Path) -> None:
    path = write(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    result = explain(path, "--pool", "batch")
    assert result.returncode == 1
    assert "[STALE: the last sample failed]" in result.stdout
    assert "Traceback" not in result.stderr
    unknown = explain(path, "--pool", "nope")
    assert unknown.returncode == 2 and "no pool named 'nope'" in unknown.stderr
