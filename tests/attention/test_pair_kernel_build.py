"""The fused pair kernel builds wherever a C++ compiler is installed: a build that fails
there (a broken source or flag) would otherwise pass unnoticed, the tensor-op path taking
over with only a log line."""
import os
import shutil

import pytest

from attnkit.attention import pair_kernel


def test_the_kernel_builds_where_a_compiler_is_installed():
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler ({compiler}) here: the tensor-op path runs")
    if os.environ.get("ATTNKIT_PAIR_KERNEL") == "0":
        pytest.skip("ATTNKIT_PAIR_KERNEL=0 is set")
    module, why = pair_kernel._build()  # built again (not the process's cached module): a cache hit takes ~1 s
    assert module is not None and why is None, why
    # built for the vector width PyTorch itself runs here (a rebuilt source gets a _vN suffix)
    assert module.__name__.startswith(f"attnkit_pairs_{pair_kernel.capability().lower()}")
    assert hasattr(module, "pair_scores") and hasattr(module, "pair_backward")
