"""Attention scores: how much query ``i`` matches key ``j``.

Every score is an ``nn.Module`` with a two-step contract that serves every backend:

* ``prepare(q, k) -> (qf, kf)`` runs once per call on whole sequences (projections,
  normalisation, scaling);
* ``block(qf, kf) -> s`` scores any block of prepared queries against any block of prepared
  keys: ``qf[..., Lq, Fq]``, ``kf[..., Lk, Fk]`` -> ``s[..., Lq, Lk]``.

``forward(q, k)`` is ``block(*prepare(q, k))``. A score whose ``block`` is a plain
``qf @ kf.transpose(-1, -2)`` sets ``is_dot = True``; the fused dot-product kernels (SDPA, the
block-sparse flash path, FlexAttention) then run it. The others (additive, MLP, user
callables) run on the chunked backend, which calls ``block`` on key/query tiles so the
``Lq x Lk x hidden`` tensor of additive scores never exists at once.

Dot-product scores may keep a constant factor out of ``prepare`` as ``dot_scale``
(``block`` multiplies by it): fused kernels take it as their ``scale`` argument instead of
paying a pass over the queries.

``block_cost`` is the number of floats ``block`` holds per (query, key) pair; the chunked
backend sizes its tiles with it (``tile_cost``: what a score holds for given inputs, less
where the fused additive/MLP kernel runs).
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import block_options, check_keys
from ..errors import ConfigError
from ..registry import Registry
from . import pair_kernel

SCORES: Registry[type[Score]] = Registry("score")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
}


_scratch = threading.local()
SCRATCH_MAX_FLOATS = 1 << 22  # buffers above 16 MiB (fp32) are not kept between calls


def scratch(slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A reusable CPU buffer of ``shape`` for tile temporaries, valid until the next call
    with the same ``slot``; a fresh tensor when autograd records (it may save it) or off CPU.

    Why: the chunked backend allocates and frees the same tile buffers (up to 16 MiB)
    hundreds to thousands of times per call. glibc serves them with fresh mmaps until its
    threshold adapts, so a first call faulted in ~2M pages (additive score at L=2048: 3.5 s instead of 0.6 s; at
    8192: 47 s instead of 10 s, measured with ``getrusage`` minor faults)."""
    n = math.prod(shape)
    if torch.is_grad_enabled() or like.device.type != "cpu" or n > SCRATCH_MAX_FLOATS:
        return like.new_empty(shape)
    # an inference-mode buffer cannot be written outside inference mode (and vice versa is
    # fine but kept apart too): one buffer per mode
    key = (slot, like.dtype, torch.is_inference_mode_enabled())
    buf = getattr(_scratch, "bufs", None)
    if buf is None:
        buf = _scratch.bufs = {}
    t = buf.get(key)
    if t is None or t.numel() < n:
        t = buf[key] = like.new_empty(n)
    return t[:n].view(shape)


class Score(nn.Module):
    """Base class of attention scores (see the module docstring for the contract)."""

    is_dot = False
    dot_scale = 1.0
    block_cost = 1
    block_backward = None  # optional (qf, kf, dS, state) -> (dqf, dkf, {param: grad}) for one tile

    def __init__(self, q_dim: int, k_dim: int):
        super().__init__()
        if q_dim <= 0 or k_dim <= 0:
            raise ConfigError(f"score dims must be > 0, got q_dim={q_dim}, k_dim={k_dim}")
        self.q_dim, self.k_dim = q_dim, k_dim

    def prepare(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sequence work done once per call; identity by default."""
        return q, k

    def prepare_keys(self, k: torch.Tensor) -> torch.Tensor:
        """The key half of :meth:`prepare` alone (``prepare`` treats queries and keys apart):
        a decoder attending over the same keys at every step computes it once and passes it
        to ``attend(..., kf=)``."""
        return self.prepare(k.new_zeros(*k.shape[:-2], 0, self.q_dim), k)[1]

    def block(self, qf: torch.Tensor, kf: torch.Tensor) -> torch.Tensor:
        """Scores ``[..., Lq, Lk]`` of prepared query and key blocks."""
        s = qf @ kf.transpose(-1, -2)
        return s * self.dot_scale if self.dot_scale != 1.0 else s

    def tile_cost(self, qf: torch.Tensor, kf: torch.Tensor) -> int:
        """Floats ``block`` holds per (query, key) pair for these inputs (``block_cost``); the
        chunked backend sizes its tiles with it."""
        return self.block_cost

    def block_keep(self, qf: torch.Tensor, kf: torch.Tensor) -> tuple[torch.Tensor, object]:
        """``(block(qf, kf), state)``: ``state`` is handed to ``block_backward`` for the same
        tile so that it need not recompute what the scores already made (``None`` here)."""
        return self.block(qf, kf), None

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Full score matrix ``[..., Lq, Lk]``."""
        return self.block(*self.prepare(q, k))


def _same_dims(name: str, q_dim: int, k_dim: int) -> None:
    if q_dim != k_dim:
        raise ConfigError(
            f"score {name!r} needs queries and keys of the same dim, got q_dim={q_dim}, "
            f"k_dim={k_dim}; use 'general', 'additive' or 'mlp' for different dims"
        )


@SCORES.register("dot")
class DotScore(Score):
    """Dot product ``q . k`` (Luong et al., 2015, "dot")."""

    is_dot = True

    def __init__(self, q_dim: int, k_dim: int):
        super().__init__(q_dim, k_dim)
        _same_dims("dot", q_dim, k_dim)


@SCORES.register("scaled_dot")
class ScaledDotScore(DotScore):
    """Scaled dot product ``q . k / sqrt(d)`` (Vaswani et al., 2017)."""

    def __init__(self, q_dim: int, k_dim: int, scale: float | None = None):
        super().__init__(q_dim, k_dim)
        self.dot_scale = float(scale) if scale is not None else 1.0 / math.sqrt(q_dim)


@SCORES.register("general")
class BilinearScore(Score):
    """Bilinear ``q^T W k`` (Luong et al., 2015, "general"); queries and keys may differ in dim."""

    is_dot = True

    def __init__(self, q_dim: int, k_dim: int):
        super().__init__(q_dim, k_dim)
        self.weight = nn.Linear(q_dim, k_dim, bias=False)

    def prepare(self, q, k):
        return self.weight(q), k


def _autocast_off_if(off: bool, like: torch.Tensor):
    """Autocast disabled inside when ``off`` (a float32 loop must not be cast back to bf16)."""
    return torch.autocast(like.device.type, enabled=False) if off else contextlib.nullcontext()


@SCORES.register("mlp")
class MLPScore(Score):
    """``v^T act(W_q q + W_k k + b)``: an MLP over each (query, key) pair.

    ``hidden`` is the attention dim; ``activation`` one of tanh, relu, gelu, silu, sigmoid.
    """

    def __init__(self, q_dim: int, k_dim: int, hidden: int = 128, activation: str = "tanh", bias: bool = True):
        super().__init__(q_dim, k_dim)
        if hidden <= 0:
            raise ConfigError(f"score hidden: must be > 0, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"score activation: unknown {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self.hidden, self.activation = hidden, activation
        self.w_q = nn.Linear(q_dim, hidden, bias=bias)
        self.w_k = nn.Linear(k_dim, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.block_cost = hidden

    # (The fused C++ kernel, where it runs, always computes in float32: this setting is the
    # tensor-op path's.)
    # The pair loop (``act(qf_i + kf_j) . v`` over Lq x Lk x hidden) is elementwise work, which
    # matrix units do not speed up. ``pair_dtype = torch.float32`` runs it in float32 for
    # bf16/fp16 inputs and rounds only its result (more exact; autocast kept out of it). Not the
    # default: on a 2-core AMD EPYC with avx512_bf16 it measured 0.69x / 0.74x the speed of the
    # loop in bf16 forward, 0.92x / 0.94x forward+backward in two runs (additive score, L=2048;
    # benchmarks/results/attention_bf16.json, contender attnkit-fp32-pairs).
    pair_dtype: torch.dtype | None = None

    def _pair_inputs(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``xs`` in the pair loop's dtype: float32 for low-precision inputs (``pair_dtype``)."""
        if self.pair_dtype is None or xs[0].dtype not in (torch.bfloat16, torch.float16):
            return xs
        return tuple(x.to(self.pair_dtype) for x in xs)

    def prepare(self, q, k):
        return self.w_q(q), self.w_k(k)

    def block(self, qf, kf):
        return self.block_keep(qf, kf)[0]

    # tile cost with the fused kernel: no pair buffer, only the scores and the softmax's own
    # tile tensors; measured best among 1, 4, 16 and 128 (see benchmarks/results/attention.json)
    kernel_tile_cost = 4

    def _kernel_runs(self, qf, kf) -> bool:
        """Whether the fused C++ pair loop (:mod:`~attnkit.attention.pair_kernel`) computes this
        score's blocks: tanh or relu, CPU, float32/bf16/fp16, a kernel that built, and this
        class's own ``block`` and ``block_keep``."""
        return (type(self).block_keep is MLPScore.block_keep and type(self).block is MLPScore.block
                and pair_kernel.usable(qf, kf, self.activation))

    def tile_cost(self, qf, kf):
        return self.kernel_tile_cost if self._kernel_runs(qf, kf) else self.block_cost

    def block_keep(self, qf, kf):
        """``(block(qf, kf), act)``: the scores and the activated pair buffer, which
        :meth:`_block_backward` takes instead of computing it again (with autograd off it
        is a scratch buffer, valid until the next pair buffer is made on this thread). The
        fused kernel keeps nothing (``act`` None): its backward recomputes the pairs in registers.
        Autograd through the scores (a parameter or input that requires grad, grad mode on)
        takes the tensor ops."""
        v = self.v.weight
        recorded = torch.is_grad_enabled() and (qf.requires_grad or kf.requires_grad or v.requires_grad)
        if not recorded and self._kernel_runs(qf, kf):
            # (without autograd no graph can form: the weight goes in as it is, one call fewer)
            return pair_kernel.pair_scores(qf, kf, (v.detach() if torch.is_grad_enabled() else v)[0],
                                           self.activation), None
        dtype = torch.promote_types(qf.dtype, kf.dtype)
        qf, kf = self._pair_inputs(qf, kf)
        with _autocast_off_if(qf.dtype != dtype, qf):  # under bf16 autocast `@ v` would go back to bf16
            v = v.squeeze(0).to(qf.dtype)  # bf16 autocast: backward runs outside autocast
            act = self._activated(qf, kf)
            s = (act @ v.unsqueeze(-1)).squeeze(-1)
            if self.activation == "tanh":  # act = sigmoid(2x), tanh(x) = 2 act - 1
                s = 2 * s - v.sum()
        return s.to(dtype), act

    def _activated(self, qf, kf):
        """The activated pair buffer ``(..., Lq, Lk, hidden)`` of pair-loop inputs; for tanh
        ``sigmoid(2x)``: tanh(x) = 2 sigmoid(2x) - 1, and sigmoid runs ~9x faster than tanh on
        CPU (measured: 0.7 vs 6.6 ms per 4M floats), this being the additive score's hot loop.
        The 2x is applied to the query and key rows, not to the pair buffer (one pass less)."""
        if self.activation == "tanh":
            return torch.sigmoid_(self._pre(qf, kf, scale=2.0))
        pre = self._pre(qf, kf)
        return torch.relu_(pre) if self.activation == "relu" else ACTIVATIONS[self.activation](pre)

    @staticmethod
    def _pre(qf, kf, slot=0, scale=1.0):
        """``scale * (qf[..., i, None, :] + kf[..., None, j, :])`` into a scratch buffer (the
        scale goes on the rows, which are ``Lq + Lk`` long, not on the ``Lq x Lk`` pairs)."""
        if scale != 1.0:
            qf, kf = qf * scale, kf * scale
        if torch.is_grad_enabled():
            return qf.unsqueeze(-2) + kf.unsqueeze(-3)
        shape = torch.broadcast_shapes(qf.unsqueeze(-2).shape, kf.unsqueeze(-3).shape)
        return torch.add(qf.unsqueeze(-2), kf.unsqueeze(-3), out=scratch(slot, shape, qf))

    @property
    def block_backward(self):
        """The written-out tile backward for tanh and relu (whose derivative follows from
        the output), else ``None`` (the chunked backend then differentiates ``block``); also
        ``None`` for a subclass that overrides ``block``, whose scores this formula no longer
        describes."""
        if self.activation not in ("tanh", "relu") or type(self).block is not MLPScore.block:
            return None
        return self._block_backward

    def _block_backward(self, qf, kf, ds, act=None):
        """Gradients of ``sum(ds * block(qf, kf))`` w.r.t. ``qf``, ``kf`` and ``v.weight``;
        ``act`` is the activated pair buffer from :meth:`block_keep` (made here if ``None``).

        Besides the activation, four reads of one ``(..., Lq, Lk, hidden)`` buffer: ``dv`` as
        one matrix product, ``g = ds * act'`` in one fused op, and the sums of ``g`` over keys
        (``dq``) and over queries (``dk``); ``v`` multiplies the ``hidden``-long results.
        Measured per 64x64 tile on a 2-core AMD EPYC: 2-3x faster in fp32 and 1.5x in bf16
        than forming ``act'`` in three passes and contracting it with batched matrix products."""
        if act is None and self._kernel_runs(qf, kf):  # float32 gradients, summed so by the chunked backend
            dq, dk, dv = pair_kernel.pair_backward(qf, kf, self.v.weight.detach().squeeze(0), ds, self.activation)
            return dq, dk, {self.v.weight: dv.unsqueeze(0)}
        dtypes = qf.dtype, kf.dtype
        if act is None:
            pq, pk = self._pair_inputs(qf, kf)
            with _autocast_off_if(pq.dtype != dtypes[0], pq):
                act = self._activated(pq, pk)
        with _autocast_off_if(act.dtype != dtypes[0], act):
            v = self.v.weight.squeeze(0).to(act.dtype)  # bf16 autocast: backward runs outside autocast
            hidden = v.shape[0]
            ds = ds.to(act.dtype)  # under bf16 autocast dS arrives in fp32, the tile in bf16
            g = scratch(1, act.shape, act)
            flat_ds = ds.reshape(-1)
            dv = flat_ds @ act.reshape(-1, hidden)
            if self.activation == "tanh":  # act = sigmoid(2x): tanh(x) = 2 act - 1, tanh'(x) = 4 act (1 - act)
                dv = 2 * dv - flat_ds.sum()
                torch.ops.aten.sigmoid_backward.grad_input(ds.unsqueeze(-1), act, grad_input=g)
                v = 4 * v
            else:  # relu: act' = [act > 0]
                torch.ops.aten.threshold_backward.grad_input(ds.unsqueeze(-1), act, 0, grad_input=g)
            dq = g.sum(-2) * v  # over keys
            dk = g.sum(-3) * v  # over queries
        return dq.to(dtypes[0]), dk.to(dtypes[1]), {self.v.weight: dv.unsqueeze(0).to(self.v.weight.dtype)}


@SCORES.register("additive")
class AdditiveScore(MLPScore):
    """Bahdanau et al. (2015): ``v^T tanh(W_q q + W_k k)``."""

    def __init__(self, q_dim: int, k_dim: int, hidden: int = 128):
        super().__init__(q_dim, k_dim, hidden=hidden, activation="tanh", bias=False)


@SCORES.register("cosine")
class CosineScore(Score):
    """Cosine similarity times a learnable inverse temperature ``exp(log_scale)``
    (as in Swin v2 / CLIP); initialised to ``scale`` (default 10)."""

    is_dot = True

    def __init__(self, q_dim: int, k_dim: int, scale: float = 10.0, learnable: bool = True):
        super().__init__(q_dim, k_dim)
        _same_dims("cosine", q_dim, k_dim)
        log_scale = torch.tensor(math.log(scale))
        self.log_scale = nn.Parameter(log_scale) if learnable else nn.Buffer(log_scale)

    def prepare(self, q, k):
        return F.normalize(q, dim=-1) * self.log_scale.exp(), F.normalize(k, dim=-1)


class CallableScore(Score):
    """Wraps a user function ``score(q, k) -> [..., Lq, Lk]``.

    The function must score pairs independently (row ``i`` of the result depends only on
    query ``i``, column ``j`` only on key ``j``): the chunked backend calls it on tiles.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], q_dim: int = 1, k_dim: int = 1):
        super().__init__(q_dim, k_dim)
        if not callable(fn):
            raise ConfigError(f"score: expected a name or a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = getattr(fn, "__name__", "callable")

    def block(self, qf, kf):
        return self.fn(qf, kf)


def list_scores(pattern: str = "*") -> list[str]:
    """Names of the registered scores (``list_scores("*dot*")``)."""
    return SCORES.names(pattern)


def score_options(name_or_class) -> list[str]:
    """The options a registered score takes (its constructor's keywords after the two dims)."""
    cls = SCORES.get(name_or_class, where="score") if isinstance(name_or_class, str) else name_or_class
    return block_options(cls)[0][2:]


def build_score(score: str | Callable | Score, q_dim: int, k_dim: int, **options) -> Score:
    """Build a score module from a registered name, a ``Score`` or a user callable."""
    if isinstance(score, Score):
        return score
    if isinstance(score, str):
        cls = SCORES.get(score, where="score")
        check_keys(options, score_options(cls), f"score {score!r}")
        try:
            return cls(q_dim, k_dim, **options)
        except TypeError as e:
            raise ConfigError(f"score {score!r}: bad options {options}: {e}") from None
    return CallableScore(score, q_dim, k_dim)
