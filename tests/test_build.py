"""The guard against running tests on a stale C extension (see ``setup.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from autoscaler.testing import stale_compiled_modules


def touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    os.utime(path, (mtime, mtime))


def test_a_c_source_edited_after_its_build_is_reported(tmp_path: Path) -> None:
    touch(tmp_path / "simulations" / "_ckernel.cpython-311-x86_64-linux-gnu.so", 1000.0)
    touch(tmp_path / "simulations" / "_ckernel.c", 2000.0)
    touch(tmp_path / "simulations" / "_cparse.cpython-311-x86_64-linux-gnu.so", 3000.0)
    touch(tmp_path / "simulations" / "_cparse.c", 2000.0)
    assert stale_compiled_modules(tmp_path) == [
        "simulations/_ckernel.c is newer than _ckernel.cpython-311-x86_64-linux-gnu.so",
    ]


def test_no_compiled_module_shadows_a_python_source() -> None:
    """The decision path runs interpreted: an edited ``.py`` is what runs, never a stale build."""
    root = Path(__file__).resolve().parents[1]
    shadowing = [
        str(built.relative_to(root))
        for package in ("autoscaler", "policies", "providers", "simulations")
        for built in (root / package).rglob("*.so")
        if built.with_name(built.name.split(".", 1)[0] + ".py").exists()
    ]
    assert shadowing == []
