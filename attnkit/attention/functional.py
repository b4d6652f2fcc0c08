"""``attend``: the functional core every attention module calls."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import ShapeError
from .backends import BACKENDS, Problem
from .dispatch import Dispatch, choose_backend
from .masks import MaskMod, combine_masks
from .mods import ScoreMod
from .scores import Score


def _check_rank4(name: str, t, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ShapeError(f"{name}: expected a tensor {what}, got {type(t).__name__}")
    if t.dim() != 4:
        raise ShapeError(f"{name}: expected rank 4 {what}, got shape {list(t.shape)}")
    if not t.is_floating_point():
        raise ShapeError(f"{name}: expected a floating-point tensor, got {t.dtype}")


def validate_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score: Score | None = None) -> None:
    """Check ranks, batch, heads and lengths of ``q [B,H,Lq,Dq]``, ``k [B,Hk,Lk,Dk]``,
    ``v [B,Hk,Lk,Dv]`` (and the feature dims ``score`` was built for); errors name the
    argument, expected and actual shapes."""
    _check_rank4("query", q, "[B, H, Lq, Dq]")
    _check_rank4("key", k, "[B, Hk, Lk, Dk]")
    _check_rank4("value", v, "[B, Hk, Lk, Dv]")
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ShapeError(f"batch sizes differ: query {q.shape[0]}, key {k.shape[0]}, value {v.shape[0]}")
    if k.shape[1] != v.shape[1]:
        raise ShapeError(f"key has {k.shape[1]} heads but value has {v.shape[1]}")
    if q.shape[1] % k.shape[1]:
        raise ShapeError(f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    if k.shape[2] != v.shape[2]:
        raise ShapeError(f"key length {k.shape[2]} != value length {v.shape[2]}")
    if len({q.device, k.device, v.device}) != 1 or len({q.dtype, k.dtype, v.dtype}) != 1:
        raise ShapeError(f"query/key/value must share device and dtype, got {q.device}/{k.device}/{v.device}, "
                         f"{q.dtype}/{k.dtype}/{v.dtype}")
    if score is not None and (q.shape[-1] != score.q_dim or k.shape[-1] != score.k_dim):
        raise ShapeError(f"score {type(score).__name__} was built for query dim {score.q_dim} and key dim "
                         f"{score.k_dim}, got query dim {q.shape[-1]} and key dim {k.shape[-1]}")


def build_problem(q, k, v, score: Score, mask=None, mods: Sequence[ScoreMod] = (), need_weights=False,
                  kf: torch.Tensor | None = None) -> Problem:
    """Validate, run the score's ``prepare``, fold leading scale modifiers into dot-product
    queries, and expand grouped key/value heads. ``kf``: the keys already prepared
    (``score.prepare_keys(k)``); only the queries are then prepared."""
    validate_qkv(q, k, v, score)
    if kf is None:
        qf, kf = score.prepare(q, k)
    else:
        qf = score.prepare(q, k[..., :0, :])[0]
    mods = list(mods)
    if score.is_dot:
        # Modifiers apply in order, so only the scale modifiers *before* any other one may be
        # folded into the queries: (s + bias) / t is not s / t + bias.
        while mods and mods[0].kind == "scale":
            qf = qf * mods.pop(0).factor().to(qf.dtype)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        kf, v = kf.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    mask = combine_masks(mask if isinstance(mask, (list, tuple)) else [mask])
    return Problem(qf, kf, v, score, mask, mods, need_weights)


def _empty_attention(q, k, v, score: Score, need_weights: bool):
    """Attention with nothing to attend (or nobody asking): zeros of the right shape, still on
    the autograd graph of q, k and v so a loss built on them backpropagates."""
    validate_qkv(q, k, v, score)
    b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    anchor = (q.sum() + k.sum() + v.sum()) * 0  # 0 with a grad_fn when the inputs require grad
    out = q.new_zeros(b, h, lq, v.shape[-1], dtype=v.dtype) + anchor.to(v.dtype)
    weights = q.new_zeros(b, h, lq, lk) + anchor.to(q.dtype) if need_weights else None
    return out, weights, Dispatch("none", "empty input: nothing to attend (zero-size output, no kernel runs)")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score: Score,
           mask: MaskMod | Callable | Sequence | None = None, mods: Sequence[ScoreMod] = (),
           need_weights: bool = False, backend: str = "auto", kf: torch.Tensor | None = None):
    """Attention of ``q [B,H,Lq,Dq]`` over ``k [B,Hk,Lk,Dk]``, ``v [B,Hk,Lk,Dv]``.

    Returns ``(out [B,H,Lq,Dv], weights [B,H,Lq,Lk] or None, Dispatch)``. Empty batches and
    empty sequences are legal: their outputs are empty, and queries with no keys get zero output
    and zero weights (the rule for fully masked rows). ``kf``: ``score.prepare_keys(k)``
    computed earlier (a decoder's cache), so the keys are not prepared again."""
    rank4 = all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v))
    if rank4 and 0 in (q.shape[0], q.shape[2], k.shape[2]):
        return _empty_attention(q, k, v, score, need_weights)
    p = build_problem(q, k, v, score, mask, mods, need_weights, kf)
    decision: Dispatch = choose_backend(p, backend)

    out, weights = BACKENDS.get(decision.backend).run(p)
    return out, weights, decision
