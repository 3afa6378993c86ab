"""``deploy/systemd/autoscaler.service``: accepted by ``systemd-analyze verify`` when it is
installed, and the settings the issue found broken (config unreadable by the dynamic user, GPUs
hidden from local workers, a fixed stop timeout, ``Type=exec``) checked by parsing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from autoscaler.config.controller import ControllerConfig
from autoscaler.config.durations import parse_duration
from autoscaler.runtime.supervisor import CANCEL_GRACE_S

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "autoscaler.service"
INSTALLED = "/opt/autoscaler/venv/bin/autoscaler"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of ``key -> values`` (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def seconds(value: str) -> float:
    return parse_duration(value.replace(" ", ""))


def test_notify_with_a_watchdog_that_outlasts_several_ticks(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    watchdog = seconds(service["WatchdogSec"][0])
    assert watchdog >= 3 * ControllerConfig().interval


def test_config_is_readable_by_the_dynamic_user_and_reloadable(
    service: dict[str, list[str]],
) -> None:
    """``DynamicUser`` cannot read a root-owned 0750 ConfigurationDirectory (the issue's
    ``Permission denied``, rc 2, never retried): the directory is 0755 and the file 0644 with
    its secrets in the environment file or credentials; ``systemctl reload`` sends SIGHUP."""
    assert service["DynamicUser"] == ["yes"]
    assert service["ConfigurationDirectory"] == ["autoscaler"]
    mode = int(service["ConfigurationDirectoryMode"][0], 8)
    assert mode & 0o005 == 0o005, "others must read and traverse /etc/autoscaler"
    for key in ("ExecStartPre", "ExecStart"):
        assert "/etc/autoscaler/policy.yaml" in service[key][0], key
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RestartPreventExitStatus"] == ["2"]
    assert any("/etc/autoscaler/env" in v for v in service["EnvironmentFile"])


def test_gpu_devices_reach_local_workers(service: dict[str, list[str]]) -> None:
    assert service.get("PrivateDevices", ["no"]) == ["no"]
    allowed = {v.split()[0] for v in service["DeviceAllow"]}
    assert {"char-nvidia*", "char-drm", "char-kfd"} <= allowed
    # inherited by CUDA workers, which write and execute JIT-compiled code
    assert service.get("MemoryDenyWriteExecute", ["no"]) == ["no"]


def test_stop_timeout_floor_covers_the_default_drain(service: dict[str, list[str]]) -> None:
    """The daemon extends the stop timeout to its configured drain (EXTEND_TIMEOUT_USEC, tested
    in test_sdnotify); the unit's own floor must cover the default drain before that."""
    floor = seconds(service["TimeoutStopSec"][0])
    assert floor >= ControllerConfig().drain_timeout + CANCEL_GRACE_S
    assert service["KillMode"] == ["mixed"]


def test_install_comment_does_not_name_a_package_index_install() -> None:
    text = UNIT.read_text()
    assert "pip install queue-autoscaler" not in text
    assert "pip wheel" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Verified with ExecStart pointed at this venv's ``autoscaler`` (verify checks that the
    program exists); any warning fails, since verify exits 0 on an unknown key."""
    unit = tmp_path / "autoscaler.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable).parent /
                                                              "autoscaler")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert ours == [], result.stderr
