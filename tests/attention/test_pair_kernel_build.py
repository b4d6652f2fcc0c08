"""The fused pair kernel builds wherever a C++ compiler is installed: a build that fails
there (a broken source or flag) would otherwise pass unnoticed, the tensor-op path taking
over with only a log line."""
import os
import shutil

import pytest

from attnkit.attention import pair_kernel
from tests.native_build import build_where_a_compiler_is


def test_the_kernel_builds_where_a_compiler_is_installed():
    # built again (not the process's cached module): a cache hit takes ~1 s
    module = build_where_a_compiler_is(pair_kernel._build, "ATTNKIT_PAIR_KERNEL", "the tensor-op path runs")
    # built for the vector width PyTorch itself runs here (a rebuilt source gets a _vN suffix)
    assert module.__name__.startswith(f"attnkit_pairs_{pair_kernel.capability().lower()}")
    assert hasattr(module, "pair_scores") and hasattr(module, "pair_backward")


def test_build_puts_the_ninja_wheel_on_path_only_when_ninja_is_missing(monkeypatch, tmp_path):
    import types

    import torch.utils.cpp_extension as ext

    seen = []
    monkeypatch.setattr(ext, "load_inline", lambda *a, **kw: seen.append(os.environ["PATH"]) or types.SimpleNamespace())
    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "ninja", types.SimpleNamespace(BIN_DIR="/opt/ninja-wheel/bin"))
    monkeypatch.delenv("ATTNKIT_PAIR_KERNEL", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no ninja on PATH
    assert pair_kernel._build()[0] is not None
    assert seen[-1] == "/opt/ninja-wheel/bin" + os.pathsep + "/usr/bin"
    monkeypatch.delenv("PATH")  # no PATH at all
    pair_kernel._build()
    assert seen[-1] == "/opt/ninja-wheel/bin" + os.pathsep
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setitem(__import__("sys").modules, "ninja", None)  # the wheel missing too: the build is tried as is
    assert pair_kernel._build()[0] is not None and seen[-1] == "/usr/bin"
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # ninja found: PATH left alone
    pair_kernel._build()
    assert seen[-1] == "/usr/bin"


def test_a_lock_left_by_a_killed_build_is_removed_and_said(monkeypatch, tmp_path, caplog):
    import logging
    import time
    import types

    import torch.utils.cpp_extension as ext

    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path))
    monkeypatch.setattr(ext, "load_inline", lambda *a, **kw: types.SimpleNamespace())
    monkeypatch.delenv("ATTNKIT_PAIR_KERNEL", raising=False)
    lock = pair_kernel.build_dir(f"attnkit_pairs_{pair_kernel.capability().lower()}") / "lock"
    assert str(lock).startswith(str(tmp_path))
    lock.write_text("")
    with caplog.at_level(logging.INFO, logger="attnkit"):
        pair_kernel._build()
    assert lock.exists()  # a build running now: its lock stays
    assert any("building the additive/MLP pair kernel" in r.getMessage() for r in caplog.records)
    old = time.time() - pair_kernel.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING, logger="attnkit"):
        pair_kernel._build()
    assert not lock.exists()
    assert any(f"{lock}: left by a build that did not finish" in r.getMessage() for r in caplog.records)
    lock.write_text("")  # just under the age: kept
    young = time.time() - pair_kernel.STALE_LOCK_S + 60
    os.utime(lock, (young, young))
    pair_kernel._clear_stale_lock(lock.parent.name, "ATTNKIT_PAIR_KERNEL")
    assert lock.exists()


def test_the_kernel_is_built_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(pair_kernel, "_built", {})
    monkeypatch.setattr(pair_kernel, "_build", lambda: calls.append(1) or ("module", None))
    assert pair_kernel.kernel() == "module" and pair_kernel.kernel() == "module"
    assert calls == [1]


def test_threads_asking_for_the_kernel_at_once_build_it_once(monkeypatch):
    """Both threads miss the cache before either has built: the second, once it has the lock,
    finds the first one's module instead of building again (40-80 s each)."""
    import threading
    import time

    calls, both_missed = [], threading.Barrier(2)
    monkeypatch.setattr(pair_kernel, "_built", {})

    class Missing(dict):  # the first, unlocked look finds nothing for both threads
        def __contains__(self, key):
            if threading.current_thread().name.startswith("asker") and not getattr(threading.current_thread(), "looked", 0):
                threading.current_thread().looked = 1
                both_missed.wait(timeout=5)
                return False
            return dict.__contains__(self, key)
    monkeypatch.setattr(pair_kernel, "_built", Missing())

    def build():
        calls.append(1)
        time.sleep(0.05)
        return "module", None
    monkeypatch.setattr(pair_kernel, "_build", build)
    got = []
    askers = [threading.Thread(target=lambda: got.append(pair_kernel.kernel()), name=f"asker{i}") for i in range(2)]
    for t in askers:
        t.start()
    for t in askers:
        t.join(timeout=10)
    assert got == ["module", "module"] and calls == [1]


@pytest.mark.parametrize("error, said", [(RuntimeError("ninja: build stopped\nsecond line"),
                                          "could not build it: RuntimeError: ninja: build stopped"),
                                         (OSError(""), "could not build it: OSError: ")])
def test_a_failed_build_is_one_line_saying_why_and_the_tensor_ops_take_over(monkeypatch, tmp_path, error, said):
    import torch.utils.cpp_extension as ext

    def fail(*a, **kw):
        raise error
    monkeypatch.setattr(ext, "load_inline", fail)
    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path))
    monkeypatch.delenv("ATTNKIT_PAIR_KERNEL", raising=False)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after, whatever _build adds to it
    assert pair_kernel._build() == (None, said)


def test_the_build_says_building_or_loading_and_keeps_its_reason_short(monkeypatch, tmp_path, caplog):
    import logging

    import torch.utils.cpp_extension as ext

    long = "x" * 500
    monkeypatch.setattr(ext, "load_inline", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError(long)))
    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path))
    monkeypatch.setattr(pair_kernel, "_clear_stale_lock", lambda name, switch: None)
    monkeypatch.delenv("ATTNKIT_PAIR_KERNEL", raising=False)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    with caplog.at_level(logging.DEBUG, logger="attnkit"):
        module, why = pair_kernel._build()
    assert module is None and why.startswith("could not build it: RuntimeError: xxx") and len(why) == 300
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "pair kernel for" in r.getMessage()]
    assert said[0][0] == logging.INFO and said[0][1].startswith("building the additive/MLP pair kernel")
    name = f"attnkit_pairs_{pair_kernel.capability().lower()}"
    (pair_kernel.build_dir(name) / f"{name}.so").write_bytes(b"")  # built before: only loaded
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="attnkit"):
        pair_kernel._build()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "pair kernel for" in r.getMessage()]
    assert said[0][0] == logging.DEBUG and said[0][1].startswith("loading the additive/MLP pair kernel")


def test_torch_extensions_dir_moves_the_build(monkeypatch, tmp_path):
    """``TORCH_EXTENSIONS_DIR`` moves attnkit's kernels as it moves PyTorch's own builds (a
    read-only home, a shared cache); without it, PyTorch's default root."""
    import torch.utils.cpp_extension as ext

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert pair_kernel.build_dir("k").parent.parent == tmp_path / "ext"
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path / "default"))
    assert pair_kernel.build_dir("k").parent.parent == tmp_path / "default"
