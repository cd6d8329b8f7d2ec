"""Build of the optional ``_sfu_native`` extension (see sfu_native.c)."""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("_sfu_native", sources=["sfu_native.c"], extra_compile_args=["-O2", "-Wall", "-Wextra"])],
)
