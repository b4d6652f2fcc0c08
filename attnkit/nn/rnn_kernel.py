"""LSTM and GRU recurrences for small inference batches, fused into one C++ kernel (CPU).

At batch 1 PyTorch's CPU LSTM (oneDNN) re-packs its weights on every call: measured on a
BiLSTM of hidden 256 over 384-dim inputs, about 0.47 ms per direction whatever the length
(0.53 ms for one token), most of a distilled student's time per sentence. Without oneDNN,
ATen's own LSTM runs ~8 small ops per step. Here a layer is one matrix product for the
input projections of every step and both directions (oneDNN's GEMM), then one kernel call
for the recurrence (or, over a token embedding, the first layer's projections looked up per
token: :mod:`attnkit.nn.token_rows`): each (sequence, direction) on its own thread, the step's
``W_hh h`` as register-blocked FMAs over ``W_hh`` kept transposed (packed once per weight
version, not per call), the gates in the same pass. Padded positions stay zero and a
backward direction starts at each sequence's own last token, as with packed sequences.
Initial states are taken and final ones returned as the module does (``run(rnn, x, lengths,
hx) -> (out, h_n)``), so a decoder's steps (``rnn.run_recurrence``) run here too: measured
before, an LSTM decoder step at beam 5 spent 0.44 of its 0.87 ms in oneDNN's re-packing.
The GRU's hidden bias stays inside the reset gate's product, as PyTorch's GRU has it:
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.

It runs only where it is faster and computes what PyTorch's module does (to float32
rounding, ~1e-6): inference (no gradient wanted, no dropout between layers in training), CPU
float32 weights (bf16 inputs are widened: under bf16 autocast the recurrence runs in float32
either way, see ``rnn.run_recurrence``), a plain ``batch_first`` ``nn.LSTM`` (without
projections) or ``nn.GRU`` without forward hooks, batches of at most :data:`MAX_BATCH`
sequences (``benchmarks/results/small_calls.json``: at hidden 256 oneDNN's batched GEMMs
catch up at 16 and win at 32; at hidden 128 the kernel was still 1.47x faster at 32: the
limit is the larger model's), nothing tracing (an exported graph keeps the PyTorch module).
The Python lock is released during the recurrence. ``ATTNKIT_RNN_KERNEL=0`` turns it off; it is built like the attention pair
kernel (once per machine, then cached) and where it cannot be, PyTorch's RNN runs.
"""
from __future__ import annotations

import threading
import weakref

import torch
from torch import nn
from torch.nn.modules import module as base

from ..attention.pair_kernel import ThreadSwitch, built_once, compile_kernel, tracing

MAX_BATCH = 16
CELLS = {nn.LSTM: 0, nn.GRU: 1}  # the kernel's CELL template argument

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
static inline Vec sigmoid(const Vec& x) { const Vec one(1.f); return one / (one + x.neg().exp()); }

// g[j] = a[j] + sum_k h[k] * w[k, j] for j < G (w: H rows of G floats)
static inline void matvec(const float* a, const float* w, const float* h, float* g, int64_t H, int64_t G) {
  int64_t j = 0;
  for (; j + K * W <= G; j += K * W) {
    Vec acc[K];
    for (int64_t q = 0; q < K; ++q) acc[q] = Vec::loadu(a + j + q * W);
    for (int64_t k = 0; k < H; ++k) {
      const Vec hk(h[k]);
      const float* wr = w + k * G + j;
      for (int64_t q = 0; q < K; ++q) acc[q] = at::vec::fmadd(hk, Vec::loadu(wr + q * W), acc[q]);
    }
    for (int64_t q = 0; q < K; ++q) acc[q].store(g + j + q * W);
  }
  for (; j + W <= G; j += W) {
    Vec acc = Vec::loadu(a + j);
    for (int64_t k = 0; k < H; ++k) acc = at::vec::fmadd(Vec(h[k]), Vec::loadu(w + k * G + j), acc);
    acc.store(g + j);
  }
  for (; j < G; ++j) {
    float acc = a[j];
    for (int64_t k = 0; k < H; ++k) acc += h[k] * w[k * G + j];
    g[j] = acc;
  }
}

// CELL 0 (LSTM, gates i f g o; xp holds both biases), CELL 1 (GRU, gates r z n; xp holds b_ih, bh b_hh).
// xp (B, T, D*G) input projections; whT (D, H, G) W_hh transposed per direction; bh (D, G);
// lengths (B) int64; h0, c0 (D, B, H) initial states, or empty for zeros (c0: LSTM only)
// -> {(B, T, D*H) zero past each length, h_n (D, B, H), c_n (D, B, H) (LSTM; else empty)}:
// the states after each sequence's last step of each direction (its initial ones when empty).
template <int CELL>
std::vector<torch::Tensor> recurrence(const torch::Tensor& xp, const torch::Tensor& whT, const torch::Tensor& bh,
                                      const torch::Tensor& lengths, const torch::Tensor& h0, const torch::Tensor& c0) {
  const int64_t B = xp.size(0), T = xp.size(1), D = whT.size(0), H = whT.size(1), G = whT.size(2);
  auto out = torch::zeros({B, T, D * H}, xp.options());
  auto hn = torch::empty({D, B, H}, xp.options());
  auto cn = CELL == 0 ? torch::empty({D, B, H}, xp.options()) : torch::empty({0}, xp.options());
  const float* xpp = xp.data_ptr<float>();
  const float* wp = whT.data_ptr<float>();
  const float* bhp = bh.data_ptr<float>();
  const int64_t* lp = lengths.data_ptr<int64_t>();
  const float* h0p = h0.numel() ? h0.data_ptr<float>() : nullptr;
  const float* c0p = c0.numel() ? c0.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  float* hnp = hn.data_ptr<float>();
  float* cnp = CELL == 0 ? cn.data_ptr<float>() : nullptr;
  at::parallel_for(0, B * D, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> g(G), h(H), c(H);
    const Vec one(1.f);
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / D, d = r % D, n = std::min<int64_t>(std::max<int64_t>(lp[b], 0), T);
      const float* w = wp + d * H * G;
      const int64_t state = (d * B + b) * H;  // this row's slot in h0, c0, h_n, c_n
      if (h0p) std::copy(h0p + state, h0p + state + H, h.begin()); else std::fill(h.begin(), h.end(), 0.f);
      if (c0p) std::copy(c0p + state, c0p + state + H, c.begin()); else std::fill(c.begin(), c.end(), 0.f);
      for (int64_t s = 0; s < n; ++s) {
        const int64_t t = d == 0 ? s : n - 1 - s;
        const float* x = xpp + (b * T + t) * D * G + d * G;
        float* o = op + (b * T + t) * D * H + d * H;
        matvec(CELL == 0 ? x : bhp + d * G, w, h.data(), g.data(), H, G);
        int64_t u = 0;
        if (CELL == 0) {
          for (; u + W <= H; u += W) {
            const Vec cc = sigmoid(Vec::loadu(g.data() + H + u)) * Vec::loadu(c.data() + u)
                           + sigmoid(Vec::loadu(g.data() + u)) * Vec::loadu(g.data() + 2 * H + u).tanh();
            cc.store(c.data() + u);
            const Vec hh = sigmoid(Vec::loadu(g.data() + 3 * H + u)) * cc.tanh();
            hh.store(h.data() + u);
            hh.store(o + u);
          }
          for (; u < H; ++u) {
            c[u] = sigmoid1(g[H + u]) * c[u] + sigmoid1(g[u]) * std::tanh(g[2 * H + u]);
            h[u] = sigmoid1(g[3 * H + u]) * std::tanh(c[u]);
            o[u] = h[u];
          }
        } else {
          for (; u + W <= H; u += W) {
            const Vec rr = sigmoid(Vec::loadu(x + u) + Vec::loadu(g.data() + u));
            const Vec zz = sigmoid(Vec::loadu(x + H + u) + Vec::loadu(g.data() + H + u));
            const Vec cand = (Vec::loadu(x + 2 * H + u) + rr * Vec::loadu(g.data() + 2 * H + u)).tanh();
            const Vec hh = (one - zz) * cand + zz * Vec::loadu(h.data() + u);
            hh.store(h.data() + u);
            hh.store(o + u);
          }
          for (; u < H; ++u) {
            const float rr = sigmoid1(x[u] + g[u]), zz = sigmoid1(x[H + u] + g[H + u]);
            const float cand = std::tanh(x[2 * H + u] + rr * g[2 * H + u]);
            h[u] = (1.f - zz) * cand + zz * h[u];
            o[u] = h[u];
          }
        }
      }
      std::copy(h.begin(), h.end(), hnp + state);
      if (CELL == 0) std::copy(c.begin(), c.end(), cnp + state);
    }
  });
  return {out, hn, cn};
}

std::vector<torch::Tensor> rnn_recurrence(const torch::Tensor& xp, const torch::Tensor& whT, const torch::Tensor& bh,
                                          const torch::Tensor& lengths, int64_t cell, const torch::Tensor& h0,
                                          const torch::Tensor& c0) {
  TORCH_CHECK(cell == 0 || cell == 1, "cell must be 0 (LSTM) or 1 (GRU)");
  TORCH_CHECK(xp.dim() == 3 && whT.dim() == 3 && bh.dim() == 2 && lengths.dim() == 1, "ranks: xp 3, whT 3, bh 2, lengths 1");
  TORCH_CHECK(xp.scalar_type() == at::kFloat && whT.scalar_type() == at::kFloat && bh.scalar_type() == at::kFloat,
              "xp, whT, bh must be float32");
  TORCH_CHECK(lengths.scalar_type() == at::kLong, "lengths must be int64");
  TORCH_CHECK(xp.is_contiguous() && whT.is_contiguous() && bh.is_contiguous() && lengths.is_contiguous(),
              "inputs must be contiguous");
  const int64_t D = whT.size(0), G = whT.size(2);
  TORCH_CHECK(G == (cell == 0 ? 4 : 3) * whT.size(1), "whT: (D, H, gates*H) with 4 gates (LSTM) or 3 (GRU)");
  TORCH_CHECK(xp.size(2) == D * G && bh.size(0) == D && bh.size(1) == G && lengths.size(0) == xp.size(0),
              "shapes: xp (B, T, D*G), bh (D, G), lengths (B)");
  for (const torch::Tensor* s : {&h0, &c0}) {
    TORCH_CHECK(s->numel() == 0 || (s->scalar_type() == at::kFloat && s->is_contiguous() && s->dim() == 3
                                    && s->size(0) == D && s->size(1) == xp.size(0) && s->size(2) == whT.size(1)),
                "h0, c0: empty, or float32 contiguous (D, B, H)");
  }
  TORCH_CHECK(cell == 0 || c0.numel() == 0, "c0: the GRU has no cell state");
  return cell == 0 ? recurrence<0>(xp, whT, bh, lengths, h0, c0) : recurrence<1>(xp, whT, bh, lengths, h0, c0);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // the Python lock is released for the call: other threads (a server's) run meanwhile
  m.def("rnn_recurrence", &rnn_recurrence, py::call_guard<py::gil_scoped_release>());
}
"""
_lock = threading.Lock()
_built: dict = {}  # "module" (None when it cannot be built) and "why"
_switch = ThreadSwitch()
off = _switch.off  # ``with rnn_kernel.off():`` runs PyTorch's LSTM/GRU on this thread (tests, A/B benchmarks)
_packed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (params, versions, per-layer weights)


def kernel():
    """The compiled kernel module, built on first call (None where it cannot be: :func:`why_not`)."""
    return built_once(_built, _lock, lambda: _build(), "fused LSTM/GRU kernel", "PyTorch's LSTM/GRU runs")


def _build():
    return compile_kernel("attnkit_rnn", SOURCE, None, "ATTNKIT_RNN_KERNEL", "the fused LSTM/GRU kernel")


def why_not() -> str | None:
    """Why the kernel is not available (None when it is, or not tried yet)."""
    return _built.get("why")


def usable(rnn: nn.Module, x: torch.Tensor, hx=None) -> bool:
    """Whether :func:`run` runs ``rnn`` on ``x [B, T, D]`` (see the module's docstring), from
    initial states ``hx`` as the module takes them (None: zeros)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return False
    states = _states(rnn, x, hx)
    if states is None:  # not what the module takes: it raises its own error
        return False
    return usable_on(rnn, tuple(x.shape), x.dtype, x.device, (x, *states))


def usable_on(rnn: nn.Module, shape: tuple, dtype: torch.dtype, device: torch.device, inputs=()) -> bool:
    """:func:`usable` for an input of ``shape [B, T, D]``, ``dtype`` and ``device`` (none need
    exist yet), whose tensors ``inputs`` (the input and initial states) may need gradients."""
    if tracing() or type(rnn) not in CELLS or _switch.is_off() or rnn.proj_size or not rnn.batch_first:
        return False
    if _hooked(rnn):  # the kernel does not call rnn.forward: its hooks (weight norm, pruning ...) would not run
        return False
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16) or len(shape) != 3:
        return False
    if shape[0] > MAX_BATCH or 0 in shape:
        return False
    if rnn.training and rnn.dropout > 0 and rnn.num_layers > 1:  # dropout between layers
        return False
    weights = rnn._flat_weights  # its parameters, without walking the module tree
    if torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *weights)):
        return False
    return all(p.dtype == torch.float32 and p.device.type == "cpu" for p in weights) and kernel() is not None


def _states(rnn: nn.RNNBase, x: torch.Tensor, hx) -> tuple[torch.Tensor, ...] | None:
    """``hx`` as a tuple (``()`` for None), or None when it is not the module's initial state
    for ``x``: ``h0`` (and for the LSTM ``c0``) of shape ``[layers * dirs, B, H]``, floating
    point in ``x``'s dtype (as the module wants them), on the CPU; the LSTM's as a tuple, the
    GRU's as one tensor."""
    if hx is None:
        return ()
    lstm = type(rnn) is nn.LSTM
    if isinstance(hx, tuple) != lstm:  # nn.GRU refuses a tuple, nn.LSTM a lone tensor
        return None
    states = hx if lstm else (hx,)
    if len(states) != (2 if lstm else 1) or x.dim() != 3:
        return None
    want = ((2 if rnn.bidirectional else 1) * rnn.num_layers, x.shape[0], rnn.hidden_size)
    fits = all(isinstance(t, torch.Tensor) and tuple(t.shape) == want and t.device.type == "cpu"
               and t.dtype == x.dtype for t in states)
    return states if fits else None


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run forward hooks (its own or global ones)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or base._global_forward_hooks
                or base._global_forward_pre_hooks)


def packed(rnn: nn.RNNBase) -> list[tuple[torch.Tensor, ...]]:
    """Per layer ``(W_ih^T [in, dirs*G], b [dirs*G], W_hh^T [dirs, H, G], b_h [dirs, G])`` with
    ``G = gates * H``: the LSTM's two biases summed into ``b`` (``b_h`` zeros), the GRU's hidden
    bias kept apart (it sits inside the reset gate's product). Made once per weight version:
    the same parameter tensors on the same storage at the same version counters (an optimizer
    step, ``copy_``, ``load_state_dict``, ``.to()``/``.float()``, which swap ``.data``, or a
    replaced parameter make them again). Not seen: in-place edits through ``.data``, which
    bypass the version counter (edit the parameter itself, or call ``rnn_kernel.forget(rnn)``);
    weights made under ``torch.inference_mode`` have no version counter: they are packed on
    every call."""
    params = list(rnn._flat_weights)
    versions = None if any(p.is_inference() for p in params) else [(p.data_ptr(), p._version) for p in params]
    hit = _packed.get(rnn)
    if (versions is not None and hit is not None and hit[1] == versions
            and all(a is b for a, b in zip(hit[0], params))):
        return hit[2]
    dirs = 2 if rnn.bidirectional else 1
    gru = type(rnn) is nn.GRU
    layers = []
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            sfx = [f"_l{layer}" + ("_reverse" if d else "") for d in range(dirs)]
            w_ih = torch.cat([getattr(rnn, "weight_ih" + s) for s in sfx]).t().contiguous()
            w_hh = torch.stack([getattr(rnn, "weight_hh" + s).t() for s in sfx]).contiguous()
            b_h = w_hh.new_zeros(dirs, w_hh.shape[-1])
            if not rnn.bias:
                b = w_ih.new_zeros(w_ih.shape[1])
            elif gru:
                b = torch.cat([getattr(rnn, "bias_ih" + s) for s in sfx])
                b_h = torch.stack([getattr(rnn, "bias_hh" + s) for s in sfx]).contiguous()
            else:
                b = torch.cat([getattr(rnn, "bias_ih" + s) + getattr(rnn, "bias_hh" + s) for s in sfx])
            layers.append((w_ih, b, w_hh, b_h))
    if versions is not None:
        _packed[rnn] = (params, versions, layers)
    return layers


def forget(rnn: nn.Module) -> None:
    """Drop ``rnn``'s packed weights: the next call packs them again (after edits through ``.data``),
    and makes again the input projections kept per token from them (:mod:`attnkit.nn.token_rows`)."""
    _packed.pop(rnn, None)


def run(rnn: nn.RNNBase, x: torch.Tensor | None, lengths: torch.Tensor, hx=None, first=None):
    """``rnn`` (an ``nn.LSTM`` or ``nn.GRU``) over ``x [B, T, D]`` with each sequence's
    ``lengths``, from initial states ``hx`` (as the module takes them; None: zeros). Returns
    ``(out, h_n)`` as the module does on the packed batch: ``out [B, T, dirs*H]`` float32, zero
    past each length, and the states after each sequence's last step (``(h_n, c_n)`` for the
    LSTM), float32. ``first``: the first layer's input projections ``x W_ih^T + b``
    (``[B, T, dirs*G]`` float32, as :func:`packed` lays them out) computed already, instead of
    ``x`` (:mod:`attnkit.nn.token_rows`)."""
    b, t = (x if first is None else first).shape[:2]
    if lengths.dtype != torch.int64 or lengths.device.type != "cpu" or not lengths.is_contiguous():
        lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()  # (a no-op .to still costs a dispatch)
    cell = CELLS[type(rnn)]
    dirs = 2 if rnn.bidirectional else 1
    states = [s.float() for s in (hx if isinstance(hx, tuple) else () if hx is None else (hx,))]
    none = torch.empty(0)
    h = x if x is None or x.dtype == torch.float32 else x.float()
    finals = []
    with torch.autocast("cpu", enabled=False):  # float32 throughout, as rnn.run_recurrence
        for layer, (w_ih, bias, w_hh, b_h) in enumerate(packed(rnn)):
            h0, c0 = (states[i][layer * dirs:(layer + 1) * dirs].contiguous() if i < len(states) else none
                      for i in (0, 1))
            if layer == 0 and first is not None:
                xp = first
            else:
                xp = torch.addmm(bias, h.reshape(b * t, -1), w_ih).view(b, t, -1)
            h, hn, cn = kernel().rnn_recurrence(xp, w_hh, b_h, lengths, cell, h0, c0)
            finals.append((hn, cn))
    h_n, c_n = (torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*finals))
    return h, ((h_n, c_n) if cell == 0 else h_n)
