"""Build the compiled modules; everything else about the package is in pyproject.toml.

Two kinds, both built at install time with the system C compiler:

* The simulator's C extensions (``simulations/_ckernel.c``, ``_cparse.c``). They use only the
  CPython C API and the buffer protocol (numpy arrays are passed as buffers), so building
  needs the Python headers, not numpy. Floating-point contraction is off so a fused
  multiply-add cannot change parsed values or simulated times between machines.
* The decision path (``COMPILED``), compiled from its own typed Python by mypyc. The ``.py``
  files stay the only source: mypyc turns their type annotations into native code (about
  2.5x faster per pool per tick, see ``benchmarks/bench_decision.py``), and the same files run
  interpreted when the extension is absent. An extension module takes precedence over the
  ``.py`` beside it, so ``make`` rebuilds when these sources change and the test session
  refuses to run against a stale build (``tests/conftest.py``).
"""

from mypyc.build import mypycify
from setuptools import Extension, setup

FLAGS = ["-O2", "-ffp-contract=off"]

# Modules that run per pool per tick. Pydantic models stay interpreted (``policies/sla_params``,
# ``autoscaler/core/policy``): mypyc cannot compile their field declarations.
COMPILED = [
    "autoscaler/core/model.py",
    "autoscaler/core/erlang.py",
    "autoscaler/core/guards.py",
    "autoscaler/core/allocator.py",
    "autoscaler/core/pipeline.py",
    "policies/sla.py",
    "policies/sla_estimators.py",
]

setup(
    ext_modules=[
        Extension(
            "simulations._ckernel",
            ["simulations/_ckernel.c"],
            depends=["simulations/_cbuffer.h"],
            extra_compile_args=FLAGS,
        ),
        Extension(
            "simulations._cparse",
            ["simulations/_cparse.c"],
            depends=["simulations/_cbuffer.h"],
            extra_compile_args=FLAGS,
        ),
        # The build environment has mypy but not the project's dependencies: the project's
        # mypy config (its pydantic plugin) is skipped and unresolved imports type as Any,
        # which only the interpreted pydantic models are. ``make test`` type-checks strictly.
        *mypycify(["--config-file=", "--ignore-missing-imports", *COMPILED], opt_level="3"),
    ],
)
