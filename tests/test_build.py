"""The guard against running tests on a stale compiled module (see ``setup.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from autoscaler.testing import stale_compiled_modules


def touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    os.utime(path, (mtime, mtime))


def test_a_source_edited_after_its_build_is_reported(tmp_path: Path) -> None:
    touch(tmp_path / "policies" / "sla.cpython-311-x86_64-linux-gnu.so", 1000.0)
    touch(tmp_path / "policies" / "sla.py", 2000.0)
    touch(tmp_path / "simulations" / "_ckernel.cpython-311-x86_64-linux-gnu.so", 1000.0)
    touch(tmp_path / "simulations" / "_ckernel.c", 2000.0)
    touch(tmp_path / "autoscaler" / "core" / "guards.cpython-311-x86_64-linux-gnu.so", 3000.0)
    touch(tmp_path / "autoscaler" / "core" / "guards.py", 2000.0)
    assert stale_compiled_modules(tmp_path) == [
        "policies/sla.py is newer than sla.cpython-311-x86_64-linux-gnu.so",
        "simulations/_ckernel.c is newer than _ckernel.cpython-311-x86_64-linux-gnu.so",
    ]

