"""``need_weights=True`` for the dot-product backends.

The fused kernels never write the ``Lq x Lk`` probabilities, and returning them means
writing exactly that matrix once. Per query block we compute the scores of the visible key
tiles, softmax them, write them straight into the weights tensor and multiply by the
values: one pass, no ``Lq x Lk`` temporaries beyond the result itself, masked-out tiles
skipped (left zero). Measured against the fused kernel without weights in
``benchmarks/attention.py`` (``need_weights`` rows).
"""
from __future__ import annotations

import torch

from .base import Problem, tile_scores
from .reference import masked_softmax
from .tiles import QueryBlock


def blockwise_softmax(p: Problem, plan: list[QueryBlock]) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and weights, computed per query block over the span of its visible tiles."""
    b, h, lq, lk = p.shape
    track = p.needs_grad
    outs, rows = [], []
    weights = None if track else p.qf.new_zeros(b, h, lq, lk)
    out = None if track else p.qf.new_zeros(b, h, lq, p.v.shape[-1])
    for qb in plan:
        if not qb.tiles and not track:
            continue  # nothing visible: zeros
        k0, k1 = (qb.tiles[0].k0, qb.tiles[-1].k1) if qb.tiles else (0, lk)
        s = tile_scores(p, (qb.q0, qb.q1), (k0, k1))
        # A block with nothing visible still runs (all masked -> zeros) to keep the graph connected.
        allowed = _span_mask(qb, k0, k1, s) if qb.tiles else torch.zeros(s.shape, dtype=torch.bool, device=s.device)
        w = masked_softmax(s, allowed)
        o = w @ p.v[:, :, k0:k1]
        if track:
            outs.append(o)
            rows.append(torch.nn.functional.pad(w, (k0, lk - k1)))
        else:
            weights[:, :, qb.q0:qb.q1, k0:k1] = w
            out[:, :, qb.q0:qb.q1] = o
    if track:
        return torch.cat(outs, 2), torch.cat(rows, 2)
    return out, weights


def _span_mask(qb: QueryBlock, k0: int, k1: int, s: torch.Tensor) -> torch.Tensor | None:
    """Boolean mask over the span ``[k0, k1)`` from the block's tiles (gaps are masked)."""
    if all(t.allowed is None and not t.causal for t in qb.tiles) and sum(t.k1 - t.k0 for t in qb.tiles) == k1 - k0:
        return None
    allowed = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    for t in qb.tiles:
        if t.allowed is not None:
            allowed[..., t.k0 - k0:t.k1 - k0] = t.allowed
        else:
            allowed[..., t.k0 - k0:t.k1 - k0] = True
    return allowed
