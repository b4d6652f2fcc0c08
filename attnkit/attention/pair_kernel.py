"""The additive/MLP score's pair loop fused into one C++ kernel (CPU).

``s[i, j] = sum_h v[h] * act(qf[i, h] + kf[j, h])`` over ``Lq x Lk x hidden`` is elementwise
work. Run as tensor ops, every step (the sum, the activation, the product with ``v``; in the
backward the derivative and two reductions) is one pass over an ``Lq x Lk x hidden`` buffer
that does not fit in cache, so the loop is bound by memory traffic and by per-op overhead on
small tiles. Here each (query, key) pair is done in registers: the sum, the activation (tanh
as ``2 / (1 + exp(-2x)) - 1`` on ATen's vectorised ``exp``, relu), the dot with ``v``; the
backward recomputes the activation and accumulates ``dq``, ``dk`` and ``dv`` in the same pass,
skipping pairs whose ``dS`` is 0 (masked). No pair buffer exists, so tiles are sized by
their scores alone.

The kernel is compiled on first use with PyTorch's C++ extension builder (a C++ compiler and
``ninja``; 40-80 s once, then cached under ``~/.cache/torch_extensions/attnkit-py3XX``), for the
vector instructions the running PyTorch dispatches to (AVX512, AVX2, or plain C++). Where it
cannot be built, the tensor-op path runs instead and the log says why once;
``ATTNKIT_PAIR_KERNEL=0`` turns it off. It computes in float32; bf16/fp16 inputs are widened
(their rows, not their pairs) and the scores rounded once.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import torch

log = logging.getLogger("attnkit")
ACTIVATIONS = {"tanh": 0, "relu": 1}  # the activations the kernel has (others: tensor ops)
LOW_OR_SINGLE = (torch.float32, torch.bfloat16, torch.float16)

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <cmath>
#include <vector>

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

// MODE 0: tanh(x) = 2 / (1 + exp(-2x)) - 1;  MODE 1: relu
// NaN stays NaN (exp_u20 clamps its input, which would turn NaN into -1)
template <int MODE> static inline Vec act(Vec x) {
  if (MODE == 0) {
    const Vec one(1.f), two(2.f), m2(-2.f);
    return Vec::blendv(two / (one + (x * m2).exp_u20()) - one, x, x.isnan());
  }
  return at::vec::maximum(x, Vec(0.f));
}
template <int MODE> static inline float act1(float x) {
  if (MODE == 0) return 2.f / (1.f + std::exp(-2.f * x)) - 1.f;
  return (x > 0.f || std::isnan(x)) ? x : 0.f;
}
static inline float hsum(Vec a) {
  float buf[W];
  a.store(buf);
  float t = 0.f;
  for (int64_t u = 0; u < W; ++u) t += buf[u];
  return t;
}

// q (R, M, H), k (R, N, H), v (H) -> s (R, M, N)
template <int MODE> torch::Tensor scores_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t R = q.size(0), M = q.size(1), N = k.size(1), H = q.size(2);
  auto s = torch::empty({R, M, N}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* sp = s.data_ptr<float>();
  at::parallel_for(0, R * M, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const float* qi = qp + row * H;
      const float* kr = kp + (row / M) * N * H;
      float* out = sp + row * N;
      for (int64_t j = 0; j < N; ++j) {
        const float* kj = kr + j * H;
        Vec acc(0.f);
        int64_t h = 0;
        for (; h + W <= H; h += W)
          acc = at::vec::fmadd(Vec::loadu(vp + h), act<MODE>(Vec::loadu(qi + h) + Vec::loadu(kj + h)), acc);
        float tot = hsum(acc);
        for (; h < H; ++h) tot += vp[h] * act1<MODE>(qi[h] + kj[h]);
        out[j] = tot;
      }
    }
  });
  return s;
}

// gradients of sum(ds * s) w.r.t. q, k, v; pairs with ds == 0 are skipped. Deterministic
// whatever the thread count (a resumed run must end bit for bit where an uninterrupted one
// does): the query rows of each r are cut into S parts fixed by the shapes alone, each part
// accumulates its own dk/dv, and the parts are added in order at the end.
template <int MODE> std::vector<torch::Tensor> backward_impl(const torch::Tensor& q, const torch::Tensor& k,
                                                             const torch::Tensor& v, const torch::Tensor& ds) {
  const int64_t R = q.size(0), M = q.size(1), N = k.size(1), H = q.size(2);
  const int64_t S = R >= 8 ? 1 : std::min<int64_t>(M, (8 + R - 1) / R);  // parts per r
  const int64_t per = (M + S - 1) / S;
  auto dq = torch::empty({R, M, H}, q.options());
  auto dk_s = torch::zeros({R, S, N, H}, q.options());
  auto dv_s = torch::zeros({R * S, H}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const float* dsp = ds.data_ptr<float>();
  float* dqp = dq.data_ptr<float>();
  float* dkp = dk_s.data_ptr<float>();
  float* dvp = dv_s.data_ptr<float>();
  at::parallel_for(0, R * S, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> gq(H);
    const Vec zero(0.f), one(1.f);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t r = task / S, part = task % S;
      float* dkr = dkp + task * N * H;
      float* dv_mine = dvp + task * H;
      const float* kr = kp + r * N * H;
      for (int64_t i = part * per; i < std::min(M, (part + 1) * per); ++i) {
        const int64_t row = r * M + i;
        const float* qi = qp + row * H;
        const float* dsr = dsp + row * N;
        std::fill(gq.begin(), gq.end(), 0.f);
        for (int64_t j = 0; j < N; ++j) {
          const float d = dsr[j];
          if (d == 0.f) continue;
          const Vec dd(d);
          const float* kj = kr + j * H;
          float* dkj = dkr + j * H;
          int64_t h = 0;
          for (; h + W <= H; h += W) {
            const Vec x = Vec::loadu(qi + h) + Vec::loadu(kj + h);
            const Vec a = act<MODE>(x);
            Vec g;
            if (MODE == 0) g = dd * (one - a * a);
            else g = Vec::blendv(zero, dd, x > zero);
            at::vec::fmadd(dd, a, Vec::loadu(dv_mine + h)).store(dv_mine + h);
            (Vec::loadu(gq.data() + h) + g).store(gq.data() + h);
            (Vec::loadu(dkj + h) + g).store(dkj + h);
          }
          for (; h < H; ++h) {
            const float x = qi[h] + kj[h];
            const float a = act1<MODE>(x);
            const float g = MODE == 0 ? d * (1.f - a * a) : (x > 0.f ? d : 0.f);
            dv_mine[h] += d * a;
            gq[h] += g;
            dkj[h] += g;
          }
        }
        float* dqi = dqp + row * H;
        for (int64_t h = 0; h < H; ++h) dqi[h] = gq[h] * vp[h];
      }
    }
  });
  // the parts added in a fixed order, each output element by one thread
  auto dk = torch::empty({R, N, H}, q.options());
  float* dko = dk.data_ptr<float>();
  at::parallel_for(0, R * N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t rj = lo; rj < hi; ++rj) {
      const int64_t r = rj / N, j = rj % N;
      float* out = dko + rj * H;
      for (int64_t h = 0; h < H; ++h) {
        float t = 0.f;
        for (int64_t part = 0; part < S; ++part) t += dkp[((r * S + part) * N + j) * H + h];
        out[h] = t * vp[h];
      }
    }
  });
  auto dv = torch::zeros({H}, q.options());
  float* dvo = dv.data_ptr<float>();
  for (int64_t task = 0; task < R * S; ++task)
    for (int64_t h = 0; h < H; ++h) dvo[h] += dvp[task * H + h];
  return {dq, dk, dv};
}

torch::Tensor pair_scores(torch::Tensor q, torch::Tensor k, torch::Tensor v, int64_t mode) {
  pybind11::gil_scoped_release no_gil;  // other Python threads (a service's event loop) run meanwhile
  q = q.contiguous(); k = k.contiguous(); v = v.contiguous();
  return mode == 0 ? scores_impl<0>(q, k, v) : scores_impl<1>(q, k, v);
}

std::vector<torch::Tensor> pair_backward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor ds,
                                         int64_t mode) {
  pybind11::gil_scoped_release no_gil;
  q = q.contiguous(); k = k.contiguous(); v = v.contiguous(); ds = ds.contiguous();
  return mode == 0 ? backward_impl<0>(q, k, v, ds) : backward_impl<1>(q, k, v, ds);
}
"""

# compiler flags for the vector instructions PyTorch itself dispatches to on this CPU
_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma", "-DCPU_CAPABILITY_AVX512",
               "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
_lock = threading.Lock()
_built: dict = {}  # "module" (None when it cannot be built) and "why"


class ThreadSwitch:
    """A kernel switched off for one thread inside ``with switch.off():`` blocks (tests and
    A/B benchmarks); ``switch.is_off()`` tells the kernel's ``usable``."""

    def __init__(self):
        self._local = threading.local()

    def is_off(self) -> bool:
        """Whether this thread is inside an ``off()`` block."""
        return getattr(self._local, "on", False)

    @contextlib.contextmanager
    def off(self):
        """The general path inside this block on this thread."""
        before = self.is_off()
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = before


_switch = ThreadSwitch()
off = _switch.off  # ``with pair_kernel.off():`` runs the tensor-op path on this thread


def capability() -> str:
    """The vector instruction set PyTorch runs on this CPU (``AVX512``, ``AVX2``, ``DEFAULT`` ...)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # older PyTorch
        return "DEFAULT"


def kernel():
    """The compiled kernel module, built on first call (None where it cannot be: see :func:`why_not`)."""
    return built_once(_built, _lock, lambda: _build(), "additive/MLP pair kernel",
                      "the tensor-op tile path runs, several times slower")


def built_once(cache: dict, lock, build, what: str, instead: str):
    """``cache["module"]``, made by ``build() -> (module or None, why)`` on the first call only
    (one build however many threads ask at once); a kernel that cannot be built is said once,
    with what runs ``instead``."""
    if "module" in cache:
        return cache["module"]
    with lock:
        if "module" not in cache:
            cache["module"], cache["why"] = build()
            if cache["module"] is None:
                log.warning(f"{what} not used ({cache['why']}): {instead}")
    return cache["module"]


def why_not() -> str | None:
    """Why the kernel is not available (None when it is, or not tried yet)."""
    return _built.get("why")


def _build():
    return compile_kernel("attnkit_pairs", SOURCE, ["pair_scores", "pair_backward"], "ATTNKIT_PAIR_KERNEL",
                          "the additive/MLP pair kernel")


def compile_kernel(prefix: str, source: str, functions: list[str] | None, switch: str, what: str):
    """Build (or load from the cache) the C++ ``source`` exporting ``functions`` (None: the
    source declares its own ``PYBIND11_MODULE``) for this CPU's vector instructions:
    ``(module, None)``, or ``(None, why)`` when the environment variable ``switch`` is ``0``
    or the build fails (no compiler, no ninja ...)."""
    if os.environ.get(switch, "1") == "0":
        return None, f"{switch}=0"
    cap = capability()
    if shutil.which("ninja") is None:  # the `ninja` wheel (a dependency) when its bin/ is not on PATH
        with contextlib.suppress(ImportError):
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    name = f"{prefix}_{cap.lower()}"
    _clear_stale_lock(name, switch)
    try:
        built = any(build_dir(name).glob(f"{name}*.so"))
    except OSError:
        built = False
    (log.debug if built else log.info)(f"{'loading' if built else 'building'} {what} for "
                                       f"{cap} (built once per machine: 40-80 s)")
    flags = _FLAGS.get(cap, ["-DCPU_CAPABILITY=DEFAULT"])  # plain C++: still fused, not vectorised
    try:
        from torch.utils.cpp_extension import load_inline

        module = load_inline(name, cpp_sources=source, build_directory=str(build_dir(name)),
                             functions=functions, extra_cflags=["-O3", "-fopenmp", *flags], verbose=False)
    except Exception as e:  # no compiler, no ninja, a failed build: the tensor-op path still works
        log.debug(f"{name} build failed: {e}")
        first = str(e).strip().splitlines()
        return None, f"could not build it: {type(e).__name__}: {first[0] if first else ''}"[:300]
    return module, None


STALE_LOCK_S = 600  # a build lock older than this was left by a killed build


def build_dir(name: str) -> Path:
    """Where the kernel is built and cached: ``attnkit/<name>`` under PyTorch's extension root
    (``~/.cache/torch_extensions``; ``TORCH_EXTENSIONS_DIR`` moves it), per Python version."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()  # as PyTorch's own builds
    path = Path(root) / f"attnkit-py{sys.version_info[0]}{sys.version_info[1]}" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clear_stale_lock(name: str, switch: str) -> None:
    """Remove the build lock a killed build left behind: PyTorch's builder waits on it forever."""
    try:
        lock = build_dir(name) / "lock"
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            log.warning(f"{lock}: left by a build that did not finish; removed ({switch}=0 skips the kernel)")
            lock.unlink()
    except (ImportError, OSError):
        pass


def usable(qf: torch.Tensor, kf: torch.Tensor, activation: str) -> bool:
    """Whether the kernel runs this pair loop: CPU tensors with the same leading dims, float32
    or a 16-bit float (float64 keeps the tensor ops: the kernel computes in float32), an
    activation it has, and a kernel that built."""
    return (activation in ACTIVATIONS and not _switch.is_off() and qf.device.type == "cpu"
            and kf.device.type == "cpu" and qf.shape[:-2] == kf.shape[:-2] and qf.shape[-1] == kf.shape[-1]
            and qf.dtype in LOW_OR_SINGLE and kf.dtype in LOW_OR_SINGLE and qf.numel() > 0 and kf.numel() > 0
            and not tracing() and kernel() is not None)


def exporting() -> bool:
    """Whether a graph is being exported (``torch.jit`` tracing or an ONNX export)."""
    return torch.jit.is_tracing() or _in_onnx_export()


def tracing() -> bool:
    """Whether a tracer or compiler is recording: it cannot see into the kernel (an opaque call
    would be baked into the graph as a constant)."""
    return exporting() or (hasattr(torch, "compiler") and torch.compiler.is_compiling())


_ONNX_FLAGS: list = []  # [(GLOBALS, _flags)] once found, [None] where this torch lacks them


def _in_onnx_export() -> bool:
    """``torch.onnx.is_in_onnx_export()``, which imports its two flag holders on every call
    (3 us, and a small attention call asks about five times: 15 us of a 300 us pooling call
    on a 2-core Xeon); here they are imported once. A torch without them asks torch."""
    if not _ONNX_FLAGS:
        try:
            from torch.onnx._internal.exporter import _flags
            from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

            _ONNX_FLAGS.append((GLOBALS, _flags))
        except ImportError:  # another torch layout
            _ONNX_FLAGS.append(None)
    if _ONNX_FLAGS[0] is None:
        return torch.onnx.is_in_onnx_export()
    holder, flags = _ONNX_FLAGS[0]
    return bool(holder.in_onnx_export or flags._is_onnx_exporting)


def _f32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32; ``x`` itself when it already is (a no-op ``.float()`` still costs a
    dispatch, ~2-3 us, and a small pooling call made five of them)."""
    return x if x.dtype == torch.float32 else x.float()


def _rows(x: torch.Tensor) -> torch.Tensor:
    return _f32(x if x.dim() == 3 else x.reshape(-1, x.shape[-2], x.shape[-1]))


def pair_scores(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, activation: str) -> torch.Tensor:
    """``sum_h v[h] act(qf[..., i, h] + kf[..., j, h])`` as ``(..., Lq, Lk)`` in the inputs' dtype."""
    s = kernel().pair_scores(_rows(qf), _rows(kf), _f32(v), ACTIVATIONS[activation])
    if qf.dim() != 3:
        s = s.reshape(*qf.shape[:-1], kf.shape[-2])
    dtype = qf.dtype if qf.dtype == kf.dtype else torch.promote_types(qf.dtype, kf.dtype)
    return s if s.dtype == dtype else s.to(dtype)


def pair_backward(qf, kf, v, ds, activation: str):
    """Gradients of ``sum(ds * pair_scores(qf, kf, v))``: ``(dq, dk, dv)``, float32."""
    dq, dk, dv = kernel().pair_backward(_rows(qf), _rows(kf), _f32(v), _f32(ds.reshape(-1)),
                                        ACTIVATIONS[activation])
    return dq.reshape(qf.shape), dk.reshape(kf.shape), dv
