"""The container's install, checked without a Docker daemon: the runtime stage's own script
(``deploy/container/install.sh``) installs the built wheel without extras into a clean venv and
validates an example; the daemon never imports the simulator's packages; the Dockerfile's
``HEALTHCHECK`` command passes against a live daemon and fails against a dead one."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from autoscaler.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
HEAVY = ("numpy", "matplotlib", "PIL", "fontTools", "simpy", "autoscaler.simulations")

# Runs the real CLI, then reports at exit which heavy modules were ever imported.
PROBE = f"""
import atexit, sys
HEAVY = {HEAVY!r}
def report():
    seen = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in HEAVY))
    sys.stderr.write('HEAVY=' + json.dumps(seen) + '\\n')
import json
atexit.register(report)
from autoscaler.cli import main
sys.argv = ['autoscaler', *sys.argv[1:]]
main()
"""

CONFIG = """
controller: {{interval: 100ms, metrics_address: "127.0.0.1:{port}", drain_timeout: 5s}}
pools:
  - name: chat
    queue: {{kind: memory, name: lean}}
    sla: {{max_wait: 2s}}
    capacity: {{min: 1, max: 2, boot_time: 0s}}
    groups: [{{name: local, provider: local}}]
"""


def heavy_imports(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.startswith("HEAVY=")]
    assert lines, stderr
    seen: list[str] = json.loads(lines[-1].removeprefix("HEAVY="))
    return seen


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of ``(INSTRUCTION, arguments)``, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def healthcheck_command() -> list[str]:
    runtime = dockerfile_stages()[-1]
    (args,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    command = json.loads(args[args.index("CMD") + 3:].strip())
    assert isinstance(command, list)
    return [str(c) for c in command]


def test_validate_imports_no_simulator_package() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, "validate",
                             str(ROOT / "examples" / "chat-redis-list.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert heavy_imports(result.stderr) == []


def test_running_daemon_imports_no_simulator_package_and_passes_the_healthcheck(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "policy.yaml"
    config.write_text(CONFIG.format(port=port))
    proc = subprocess.Popen([sys.executable, "-c", PROBE, "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    check = healthcheck_command()
    assert check[0] == "python"
    probe = [sys.executable, *check[1:]]
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    ready = True
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        assert ready, "the daemon never became ready"
        env = {**os.environ, "AUTOSCALER_HEALTH_URL": f"http://127.0.0.1:{port}/healthz"}
        assert subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode == 0
        proc.send_signal(signal.SIGTERM)
        _out, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert heavy_imports(stderr) == []
    dead = {**os.environ, "AUTOSCALER_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}
    assert subprocess.run(probe, env=dead, capture_output=True, timeout=30).returncode != 0


def test_dockerfile_runtime_stage_is_lean_non_root_and_health_checked() -> None:
    build, runtime = dockerfile_stages()
    assert any("gcc" in a for i, a in build if i == "RUN")  # the C kernel builds here...
    runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "apt-get" not in runs and "gcc" not in runs  # ...and no compiler ships
    assert "autoscaler-install /dist /opt/autoscaler" in runs
    assert "sim" not in dict(runtime)["ARG"]
    (user,) = [a for i, a in runtime if i == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert "/healthz" in dict(runtime)["ENV"]
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["autoscaler"]
    for instruction, args in build:
        if instruction == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
    assert (ROOT / "deploy" / "container" / "install.sh").exists()


def test_wheel_installs_without_extras_in_a_clean_venv(tmp_path: Path) -> None:
    """The runtime stage's install step, for real: the wheel without extras into a clean venv,
    then ``autoscaler validate`` from that venv. The simulator's packages must not come along
    (the issue measured numpy, matplotlib, fonttools and PIL at 117 MB of a 237 MB venv)."""
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(dist), str(ROOT)], check=True, timeout=600,
                   capture_output=True)
    result = subprocess.run(
        ["sh", str(ROOT / "deploy" / "container" / "install.sh"), str(dist), str(venv),
         str(ROOT / "examples" / "chat-redis-list.yaml")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "chat-redis-list.yaml: OK" in result.stdout
    (site,) = venv.glob("lib/python*/site-packages")
    installed = {p.name.lower() for p in site.iterdir()}
    for heavy in ("numpy", "matplotlib", "pil", "fonttools", "pip"):
        assert heavy not in installed, heavy
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nclean runtime venv: {size / 1e6:.1f} MB")
    simulate = subprocess.run([str(venv / "bin" / "autoscaler"), "simulate", "-c",
                               str(ROOT / "examples" / "gpu-fleet-sim.yaml"), "--trace", "x"],
                              capture_output=True, text=True, timeout=120)
    assert simulate.returncode == 2
    assert "pip install 'queue-autoscaler[sim]'" in simulate.stderr
    assert "Traceback" not in simulate.stderr
