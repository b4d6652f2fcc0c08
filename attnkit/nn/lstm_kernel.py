"""The LSTM recurrence for small inference batches, fused into one C++ kernel (CPU).

At batch 1 PyTorch's CPU LSTM (oneDNN) re-packs its weights on every call: measured on a
BiLSTM of hidden 256 over 384-dim inputs, about 0.47 ms per direction whatever the length
(0.53 ms for one token), most of a distilled student's time per sentence. Without oneDNN,
ATen's own LSTM runs ~8 small ops per step. Here a layer is one matrix product for the
input projections of every step and both directions (oneDNN's GEMM), then one kernel call
for the recurrence: each (sequence, direction) on its own thread, the step's
``W_hh h`` as register-blocked FMAs over ``W_hh`` kept transposed (packed once per weight
version, not per call), the gates in the same pass. Padded positions stay zero and a
backward direction starts at each sequence's own last token, as with packed sequences.

It runs only where it is faster and exact in meaning: inference (no gradient wanted), CPU
float32 (bf16 inputs are widened: the recurrence runs in float32 either way, see
``rnn.run_recurrence``), a plain ``nn.LSTM`` without projections, batches of at most
:data:`MAX_BATCH` sequences (beyond that oneDNN's batched GEMMs win: B=32 measured 7.4 ms
against 8.4 here), nothing tracing (an exported graph keeps ``nn.LSTM``).
``ATTNKIT_LSTM_KERNEL=0`` turns it off; it is built like the attention pair kernel (once per
machine, then cached) and where it cannot be, PyTorch's LSTM runs.
"""
from __future__ import annotations

import contextlib
import threading
import weakref

import torch
from torch import nn

from ..attention.pair_kernel import built_once, compile_kernel, tracing

MAX_BATCH = 8

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <cmath>
#include <vector>

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();
constexpr int64_t K = 8;  // gate vectors accumulated in registers at once

static inline float sigmoid1(float x) { return 1.f / (1.f + std::exp(-x)); }

// xp (B, T, D*4H): input projections plus both biases, gates ordered i, f, g, o per direction;
// whT (D, H, 4H): W_hh transposed per direction; lengths (B) int64 -> (B, T, D*H), zero past each length.
torch::Tensor lstm_recurrence(const torch::Tensor& xp, const torch::Tensor& whT, const torch::Tensor& lengths) {
  const int64_t B = xp.size(0), T = xp.size(1), D = whT.size(0), H = whT.size(1), G = 4 * H;
  auto out = torch::zeros({B, T, D * H}, xp.options());
  const float* xpp = xp.data_ptr<float>();
  const float* wp = whT.data_ptr<float>();
  const int64_t* lp = lengths.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * D, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> g(G), h(H), c(H);
    const Vec one(1.f);
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / D, d = r % D, n = std::min<int64_t>(std::max<int64_t>(lp[b], 0), T);
      const float* w = wp + d * H * G;
      std::fill(h.begin(), h.end(), 0.f);
      std::fill(c.begin(), c.end(), 0.f);
      for (int64_t s = 0; s < n; ++s) {
        const int64_t t = d == 0 ? s : n - 1 - s;
        const float* x = xpp + (b * T + t) * D * G + d * G;
        // g = x + W_hh h, as sum_k h[k] * whT[k, :]
        int64_t j = 0;
        for (; j + K * W <= G; j += K * W) {
          Vec acc[K];
          for (int64_t q = 0; q < K; ++q) acc[q] = Vec::loadu(x + j + q * W);
          for (int64_t k = 0; k < H; ++k) {
            const Vec hk(h[k]);
            const float* wr = w + k * G + j;
            for (int64_t q = 0; q < K; ++q) acc[q] = at::vec::fmadd(hk, Vec::loadu(wr + q * W), acc[q]);
          }
          for (int64_t q = 0; q < K; ++q) acc[q].store(g.data() + j + q * W);
        }
        for (; j + W <= G; j += W) {
          Vec acc = Vec::loadu(x + j);
          for (int64_t k = 0; k < H; ++k) acc = at::vec::fmadd(Vec(h[k]), Vec::loadu(w + k * G + j), acc);
          acc.store(g.data() + j);
        }
        for (; j < G; ++j) {
          float acc = x[j];
          for (int64_t k = 0; k < H; ++k) acc += h[k] * w[k * G + j];
          g[j] = acc;
        }
        float* o = op + (b * T + t) * D * H + d * H;
        int64_t u = 0;
        for (; u + W <= H; u += W) {
          const Vec i = one / (one + Vec::loadu(g.data() + u).neg().exp());
          const Vec f = one / (one + Vec::loadu(g.data() + H + u).neg().exp());
          const Vec gg = Vec::loadu(g.data() + 2 * H + u).tanh();
          const Vec oo = one / (one + Vec::loadu(g.data() + 3 * H + u).neg().exp());
          const Vec cc = f * Vec::loadu(c.data() + u) + i * gg;
          cc.store(c.data() + u);
          const Vec hh = oo * cc.tanh();
          hh.store(h.data() + u);
          hh.store(o + u);
        }
        for (; u < H; ++u) {
          c[u] = sigmoid1(g[H + u]) * c[u] + sigmoid1(g[u]) * std::tanh(g[2 * H + u]);
          h[u] = sigmoid1(g[3 * H + u]) * std::tanh(c[u]);
          o[u] = h[u];
        }
      }
    }
  });
  return out;
}
"""
_lock = threading.Lock()
_built: dict = {}  # "module" (None when it cannot be built) and "why"
_off = threading.local()
_packed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # nn.LSTM -> (version key, per-layer weights)


def kernel():
    """The compiled kernel module, built on first call (None where it cannot be: :func:`why_not`)."""
    return built_once(_built, _lock, lambda: _build(), "fused LSTM kernel", "PyTorch's LSTM runs")


def _build():
    return compile_kernel("attnkit_lstm", SOURCE, ["lstm_recurrence"], "ATTNKIT_LSTM_KERNEL", "the fused LSTM kernel")


def why_not() -> str | None:
    """Why the kernel is not available (None when it is, or not tried yet)."""
    return _built.get("why")


@contextlib.contextmanager
def off():
    """Run PyTorch's LSTM inside this block on this thread (tests and A/B benchmarks)."""
    before = getattr(_off, "on", False)
    _off.on = True
    try:
        yield
    finally:
        _off.on = before


def usable(rnn: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`lstm` runs ``rnn`` on ``x [B, T, D]`` (see the module's docstring)."""
    if type(rnn) is not nn.LSTM or getattr(_off, "on", False) or rnn.proj_size or not rnn.batch_first:
        return False
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16) or x.dim() != 3:
        return False
    if x.shape[0] > MAX_BATCH or x.numel() == 0 or tracing():
        return False
    if rnn.training and rnn.dropout > 0 and rnn.num_layers > 1:  # dropout between layers
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in rnn.parameters())):
        return False
    return all(p.dtype == torch.float32 and p.device.type == "cpu" for p in rnn.parameters()) and kernel() is not None


def packed(rnn: nn.LSTM) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per layer ``(W_ih^T [in, dirs*4H], b [dirs*4H], W_hh^T [dirs, H, 4H])``, made once per
    weight version (an optimizer step or ``load_state_dict`` makes them again). Weights made
    under ``torch.inference_mode`` have no version counter: they are packed on every call."""
    params = list(rnn.parameters())
    key = None if any(p.is_inference() for p in params) else tuple((p.data_ptr(), p._version) for p in params)
    hit = _packed.get(rnn)
    if key is not None and hit is not None and hit[0] == key:
        return hit[1]
    dirs = 2 if rnn.bidirectional else 1
    layers = []
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            sfx = [f"_l{layer}" + ("_reverse" if d else "") for d in range(dirs)]
            w_ih = torch.cat([getattr(rnn, "weight_ih" + s) for s in sfx]).t().contiguous()
            if rnn.bias:
                b = torch.cat([getattr(rnn, "bias_ih" + s) + getattr(rnn, "bias_hh" + s) for s in sfx])
            else:
                b = w_ih.new_zeros(w_ih.shape[1])
            w_hh = torch.stack([getattr(rnn, "weight_hh" + s).t() for s in sfx]).contiguous()
            layers.append((w_ih, b, w_hh))
    if key is not None:
        _packed[rnn] = (key, layers)
    return layers


def lstm(rnn: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``rnn`` over ``x [B, T, D]`` with each sequence's ``lengths``: ``[B, T, dirs*H]``
    float32, zero past each length (what ``nn.LSTM`` on the packed batch gives, padded)."""
    b, t, _ = x.shape
    lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()
    h = x.float()
    with torch.autocast("cpu", enabled=False):  # float32 throughout, as rnn.run_recurrence
        for w_ih, bias, w_hh in packed(rnn):
            xp = torch.addmm(bias, h.reshape(b * t, -1), w_ih).view(b, t, -1)
            h = kernel().lstm_recurrence(xp, w_hh, lengths)
    return h
