"""Secrets stay out of argv, output and logs; ``--once`` and shutdown exit codes tell the truth.

Every password here is ``sEcReTa<char>sEcReTb``: the two markers must never show up in any
output or log line, so a leak of any part of a password (as the unencoded one used to leak
past a ``#``, ``/`` or ``?``) is caught, not only a leak of the whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from autoscaler.cli import main
from autoscaler.sources.redis.settings import redact_url, validate_redis_url

PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
MARKERS = ("sEcReTa", "sEcReTb")


def password(ch: str) -> str:
    return f"{MARKERS[0]}{ch}{MARKERS[1]}"


def url_with(ch: str, base: str = "redis://127.0.0.1:6379", encoded: bool = True) -> str:
    secret = quote(password(ch), safe="") if encoded else password(ch)
    return f"{base.replace('redis://', f'redis://user:{secret}@')}/0"


def assert_no_secret(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"secret marker {marker!r} leaked"


@pytest.mark.parametrize("encoded", [True, False])
def test_redact_url_hides_any_printable_character(encoded: bool) -> None:
    for ch in PRINTABLE:
        shown = redact_url(url_with(ch, encoded=encoded))
        assert_no_secret(shown)
        assert shown == "redis://user:***@127.0.0.1:6379/0", (ch, shown)


def test_an_unencoded_separator_in_a_password_is_refused_without_echoing_it() -> None:
    for ch in "/?#@":
        with pytest.raises(ValueError, match="percent-encoded") as info:
            validate_redis_url(url_with(ch, encoded=False))
        assert_no_secret(str(info.value))
    for ch in PRINTABLE:  # percent-encoded, every character is a valid password
        assert validate_redis_url(url_with(ch)) == url_with(ch)


POOL = """
  - name: p{i}
    queue: {{kind: redis-list, url: "{url}", key: "q{i}"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 2}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: local, command: [autoscaler, worker, --kind, redis-list,
          --key, "q{i}"]}}
"""


def many_pools_config(tmp_path: Path, base: str) -> Path:
    """One pool per printable character, each on a URL whose password holds it."""
    pools = "".join(POOL.format(i=i, url=url_with(ch, base)) for i, ch in enumerate(PRINTABLE))
    path = tmp_path / "secrets.yaml"
    path.write_text("controller: {interval: 1s, drain_timeout: 1s, sample_timeout: 500ms}\n"
                    f"pools:{pools}")
    return path


def test_validate_prints_no_password(tmp_path: Path, redis_server: str) -> None:
    result = CliRunner().invoke(main, ["validate", str(many_pools_config(tmp_path, redis_server))])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "127.0.0.1" in result.output
    assert_no_secret(result.output)


def test_run_once_logs_no_password_and_fails_when_queues_are_not_sampled(
    tmp_path: Path, redis_server: str,
) -> None:
    """A real daemon process: the session's Redis has no password, so every AUTH fails, no
    queue is sampled, and ``--once`` must say so with a non-zero exit, printing no secret."""
    config = many_pools_config(tmp_path, redis_server)
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--once", "-c", str(config)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(PRINTABLE)
    assert all(line["errors"] for line in lines)
    assert proc.stderr.strip(), "the failed samples must be logged"
    assert_no_secret(proc.stdout + proc.stderr)


def test_worker_prints_no_password(redis_server: str) -> None:
    """A real ``autoscaler worker`` process, its URL in the environment, with one password
    holding every printable character at once (percent-encoded): its log lines from start to
    stop name the URL redacted and no part of the password; its argv has no URL."""
    url = url_with("".join(PRINTABLE), redis_server)
    worker = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "worker", "--kind", "redis-list", "--key", "w",
         "--block", "0.1"],
        env={**os.environ, "AUTOSCALER_QUEUE_URL": url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()  # worker_started (or worker_failed): blocks until then
        assert b"redis://" not in _cmdline(str(worker.pid))
    finally:
        worker.terminate()
        out, rest = worker.communicate(timeout=30)
    lines = [first, *rest.splitlines()]
    started = json.loads(first)
    assert started["event"] in ("worker_started", "worker_failed"), first
    if started["event"] == "worker_started":
        assert started["url"] == f"redis://user:***@{redis_server[len('redis://'):]}/0"
    assert_no_secret(out + "\n".join(lines))


def test_worker_started_by_the_local_provider_has_no_url_in_argv(
    tmp_path: Path, redis_url: str,
) -> None:
    """A real daemon starts a real worker from a command without ``--url``: the worker serves
    the pool's queue (it found the URL in ``AUTOSCALER_QUEUE_URL``) and its argv has no URL."""
    config = tmp_path / "argv.yaml"
    config.write_text(f"""
controller: {{interval: 1s, drain_timeout: 5s}}
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{redis_url}", key: "queue:argv"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 1}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: local, command: [{sys.executable}, -m, autoscaler, worker,
          --kind, redis-list, --key, "queue:argv", --heartbeat, "3"]}}
""")
    import redis

    client = redis.Redis.from_url(redis_url)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        consumers: set[bytes] = set()
        for _ in range(600):  # a bound on polling, not a timed assertion
            consumers = client.smembers("queue:argv:consumers")  # type: ignore[assignment]
            if consumers:
                break
            time.sleep(0.05)
        assert consumers, "the worker never registered: it did not get the URL"
        workers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                   and b"queue:argv" in _cmdline(pid) and b"worker" in _cmdline(pid)]
        assert workers
        for pid in workers:
            assert b"redis://" not in _cmdline(pid)
    finally:
        daemon.terminate()
        _out, err = daemon.communicate(timeout=30)
        client.close()
    assert daemon.returncode == 0, err[-2000:]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_validate_warns_once_about_a_password_in_a_command(tmp_path: Path) -> None:
    config = tmp_path / "argv.yaml"
    config.write_text(f"""
pools:
  - name: chat
    queue: {{kind: redis-list, url: "redis://127.0.0.1:6379/0", key: "k"}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 0, max: 1}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: local, command: [autoscaler, worker, --url,
          "{url_with('#')}", --kind, redis-list, --key, k]}}
""")
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.count("is a URL with a password") == 1
    assert "pool 'chat' group 'local': command argument 3" in result.output
    assert_no_secret(result.output)


SHUTDOWN = """
controller: {{interval: 1s, drain_timeout: 1s, metrics_address: "127.0.0.1:0"}}
pools:
  - name: chat
    queue: {{kind: memory, name: shutdown}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 1}}
    policy: {{kind: threshold}}
    groups:
      - {{name: local, provider: local, command: [sh, -c, "{script}"]}}
"""


@pytest.mark.parametrize(("script", "killed"), [
    # ignores SIGTERM (the marker is written once the trap is set): killed at the drain deadline
    ("trap '' TERM; touch {marker}; exec sleep 30", True),
    ("touch {marker}; exec sleep 30", False),  # stops on SIGTERM
])
def test_a_shutdown_that_had_to_kill_exits_non_zero(
    tmp_path: Path, script: str, killed: bool,
) -> None:
    """The daemon is stopped only once its instance runs its script (the marker), so a
    SIGTERM can never land before the trap is installed."""
    marker = tmp_path / "started"
    config = tmp_path / "shutdown.yaml"
    config.write_text(SHUTDOWN.format(script=script.format(marker=marker)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "run", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the instance never started"
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    events = [json.loads(e) for e in stderr.splitlines() if e.startswith("{")]
    incomplete = [e for e in events if e["event"] == "drain_incomplete"]
    if killed:
        assert proc.returncode == 1, stderr[-2000:]
        assert [e["killed"] for e in incomplete] == [["chat/local/1"]]
    else:
        assert proc.returncode == 0, stderr[-2000:]
        assert incomplete == []


INTERPOLATED = """
pools:
  - name: chat
    queue: {{kind: redis-list, url: "{url}", key: "queue:chat"}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 8}}
    groups:
      - {{name: local, provider: local, command: [autoscaler, worker, --kind, redis-list,
          --key, "queue:chat"], env: {{NOTE: "$${{kept}}"}}}}
"""


def test_env_and_file_references_are_resolved_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from autoscaler.config.models import load_config

    secret = quote(password("#"), safe="")
    monkeypatch.setenv("AUTOSCALER_TEST_REDIS_PASSWORD", secret)
    credential = tmp_path / "redis-user"
    credential.write_text("svc\n")  # systemd credentials and k8s secrets often end in one
    config = tmp_path / "refs.yaml"
    config.write_text(INTERPOLATED.format(
        url=f"redis://${{file:{credential}}}:${{AUTOSCALER_TEST_REDIS_PASSWORD}}@127.0.0.1/0"))
    loaded = load_config(config)
    pool = loaded.pools[0]
    assert pool.queue.settings.url == f"redis://svc:{secret}@127.0.0.1/0"
    assert pool.groups[0].settings.env == {"NOTE": "${kept}"}
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert_no_secret(result.output)


@pytest.mark.parametrize(("reference", "message"), [
    ("${AUTOSCALER_TEST_NEVER_SET}", "environment variable AUTOSCALER_TEST_NEVER_SET is not set"),
    ("${file:relative/path}", "the path must be absolute"),
    ("${not a name}", "not a variable name or file:/path"),
])
def test_a_bad_reference_names_itself_and_its_line(
    tmp_path: Path, reference: str, message: str,
) -> None:
    config = tmp_path / "refs.yaml"
    config.write_text(INTERPOLATED.format(url=f"redis://u:{reference}@127.0.0.1/0"))
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 2
    assert f"{config}:4: pools[0].queue.url: " in result.output and message in result.output


def test_a_file_reference_never_prints_the_file(tmp_path: Path) -> None:
    """The secret file holds a password with ``/``: the URL check refuses the value and must
    not echo it."""
    credential = tmp_path / "pw"
    credential.write_text(password("/"))
    config = tmp_path / "refs.yaml"
    config.write_text(INTERPOLATED.format(url=f"redis://u:${{file:{credential}}}@127.0.0.1/0"))
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 2
    assert "percent-encoded" in result.output
    assert_no_secret(result.output)
