"""``need_weights=True`` for the dot-product backends.

The fused kernels never write the ``Lq x Lk`` probabilities, and returning them means
writing that matrix anyway. Without autograd the whole matrix is built in place, once: one
batched matmul writes the scores into the result, masks and biases are applied per query
block in place, softmax runs in place, one batched matmul gives the output — no
``Lq x Lk`` temporary besides the result (measured 1.9x the fused kernel without weights
at L=2048; the alternative of the fused kernel plus weights from its log-sum-exp costs a
third matmul: 2.4x). With autograd, per query block differentiable ops (the graph keeps
the weights anyway). Rows whose keys are all masked give zeros.
"""
from __future__ import annotations

import torch

from ..masks import evaluate_mask
from .base import Problem, apply_mods, index_grid, tile_scores
from .reference import masked_softmax

ROWS_PER_BLOCK = 256


def attention_with_weights(p: Problem, block_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Output ``[B,H,Lq,Dv]`` and weights ``[B,H,Lq,Lk]`` of a dot-product problem, over
    query blocks of ``block_q`` rows (default ``ROWS_PER_BLOCK``, read at call time)."""
    block_q = block_q or ROWS_PER_BLOCK
    if p.needs_grad:
        return _blockwise_autograd(p, block_q)
    return _in_place(p, block_q)


def _in_place(p: Problem, block_q: int):
    b, h, lq, lk = p.shape
    q = p.qf.reshape(b * h, lq, -1)
    k = p.kf.reshape(b * h, lk, -1)
    w = torch.empty(b * h, lq, lk, dtype=p.qf.dtype, device=p.device)
    torch.baddbmm(w, q, k.transpose(1, 2), beta=0, alpha=p.score.dot_scale, out=w)  # scores, in place
    w4 = w.view(b, h, lq, lk)
    dead_rows = []
    if p.mods or p.mask is not None:
        for q0 in range(0, lq, block_q):
            q1 = min(lq, q0 + block_q)
            rows = w4[:, :, q0:q1]
            if p.mods:
                rows.copy_(apply_mods(rows, p.mods, index_grid(b, h, (q0, q1), (0, lk), p.device)))
            if p.mask is not None:
                allowed = evaluate_mask(p.mask, b, h, (q0, q1), (0, lk), p.device)
                alive = allowed.any(-1, keepdim=True)
                rows.masked_fill_(~(allowed | ~alive), float("-inf"))
                if not bool(alive.all()):
                    dead_rows.append((q0, q1, alive))
    torch.ops.aten._softmax.out(w, -1, False, out=w)  # contiguous: safe in place
    for q0, q1, alive in dead_rows:
        w4[:, :, q0:q1].mul_(alive)
    out = torch.bmm(w, p.v.reshape(b * h, lk, -1)).view(b, h, lq, -1)
    return out, w4


def _blockwise_autograd(p: Problem, block_q: int):
    b, h, lq, lk = p.shape
    outs, rows = [], []
    for q0 in range(0, lq, block_q):
        q1 = min(lq, q0 + block_q)
        s = tile_scores(p, (q0, q1), (0, lk))
        allowed = None
        if p.mask is not None:
            allowed = evaluate_mask(p.mask, b, h, (q0, q1), (0, lk), p.device).expand(s.shape)
        w = masked_softmax(s, allowed)
        outs.append(w @ p.v)
        rows.append(w)
    return torch.cat(outs, 2), torch.cat(rows, 2)
