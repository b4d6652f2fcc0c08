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


def validate_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Check ranks, batch, heads and lengths of ``q [B,H,Lq,Dq]``, ``k [B,Hk,Lk,Dk]``,
    ``v [B,Hk,Lk,Dv]``; errors name the argument, expected and actual shapes."""
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


def build_problem(q, k, v, score: Score, mask=None, mods: Sequence[ScoreMod] = (), need_weights=False) -> Problem:
    """Validate, run the score's ``prepare``, fold leading scale modifiers into dot-product
    queries, and expand grouped key/value heads."""
    validate_qkv(q, k, v)
    if q.shape[-1] != score.q_dim or k.shape[-1] != score.k_dim:
        raise ShapeError(f"score {type(score).__name__} was built for query dim {score.q_dim} and key dim "
                         f"{score.k_dim}, got query dim {q.shape[-1]} and key dim {k.shape[-1]}")
    qf, kf = score.prepare(q, k)
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


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score: Score,
           mask: MaskMod | Callable | Sequence | None = None, mods: Sequence[ScoreMod] = (),
           need_weights: bool = False, backend: str = "auto"):
    """Attention of ``q [B,H,Lq,Dq]`` over ``k [B,Hk,Lk,Dk]``, ``v [B,Hk,Lk,Dv]``.

    Returns ``(out [B,H,Lq,Dv], weights [B,H,Lq,Lk] or None, Dispatch)``.
    """
    p = build_problem(q, k, v, score, mask, mods, need_weights)
    decision: Dispatch = choose_backend(p, backend)

    out, weights = BACKENDS.get(decision.backend).run(p)
    return out, weights, decision
