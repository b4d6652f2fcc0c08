"""Shared by the C++ kernels' build tests: build one again where a compiler is installed."""
import os
import shutil

import pytest


def build_where_a_compiler_is(build, switch: str, instead: str):
    """``build()``'s module, asserted built; skips without a C++ compiler (``instead`` says what
    runs then) or with the kernel's ``switch`` environment variable at 0."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler ({compiler}) here: {instead}")
    if os.environ.get(switch) == "0":
        pytest.skip(f"{switch}=0 is set")
    module, why = build()
    assert module is not None and why is None, why
    return module
