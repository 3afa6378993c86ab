"""Build the simulator's C extensions; everything else about the package is in pyproject.toml.

The extensions use only the CPython C API and the buffer protocol (numpy arrays are passed as
buffers), so building needs a C compiler and the Python headers, not numpy. Floating-point
contraction is off so a fused multiply-add cannot change parsed values or simulated times
between machines.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-ffp-contract=off"]

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
    ],
)
