"""Build the simulator's C extensions; everything else about the package is in pyproject.toml.

``simulations/_ckernel.c`` and ``_cparse.c`` use only the CPython C API and the buffer protocol
(numpy arrays are passed as buffers), so building needs the Python headers, not numpy.
Floating-point contraction is off so a fused multiply-add cannot change parsed values or
simulated times between machines.

The decision path is plain interpreted Python: a compiled copy would shadow an edited ``.py``
and tie the build to a pinned compiler (see the README's benchmark section for the figures).
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "autoscaler.simulations._ckernel",
            ["simulations/_ckernel.c"],
            depends=["simulations/_cbuffer.h"],
            extra_compile_args=FLAGS,
        ),
        Extension(
            "autoscaler.simulations._cparse",
            ["simulations/_cparse.c"],
            depends=["simulations/_cbuffer.h"],
            extra_compile_args=FLAGS,
        ),
    ],
)
