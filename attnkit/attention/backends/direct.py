"""Small inference calls in one pass: every score at once, masked softmax, weighted values.

The chunked backend's online softmax, tile plan and custom autograd function cost a fixed
~0.2 ms of small tensor ops per call, which dominates when the whole problem is one tile
anyway: an attention-pooling layer over a 20-token sentence (1 query, 20 keys) took 0.40-0.51
ms there and 0.21-0.30 ms here (``benchmarks/results/small_calls.json``), for microseconds of
arithmetic. Where no gradient is needed and all the scores fit in
the chunked backend's own tile budget, this backend computes them in one call (the fused
additive/MLP pair kernel where it applies) with the same memory as one such tile.
Calls that need gradients, or are larger, stay on ``chunked`` (O(n) memory, recomputing
backward).
"""
from __future__ import annotations

import torch

from ..masks import evaluate_mask
from ..pair_kernel import ThreadSwitch
from .base import BACKENDS, Backend, Problem, tile_scores
from .chunked import ChunkedBackend

_switch = ThreadSwitch()
off = _switch.off  # ``with direct.off():`` never picks this backend by itself on this thread (A/B benchmarks)


def score_work(p: Problem) -> int:
    """Floats of score work for all of ``p``'s pairs: ``B*H*Lq*Lk`` times the score's per-pair
    cost, the fused kernel's (``tile_cost``) without gradients, else what autograd keeps
    (``block_cost``: the pair buffer of an additive/MLP score)."""
    b, h, lq, lk = p.shape
    per_pair = p.score.block_cost if p.needs_grad else p.score.tile_cost(p.qf, p.kf)
    return b * h * lq * lk * max(1, per_pair)


class DirectBackend(Backend):
    """All scores at once for small calls; picked automatically without gradients (inference)."""

    name = "direct"
    budget = ChunkedBackend.budget  # floats of score work: one tile of the chunked backend

    def why_not(self, p: Problem) -> str | None:
        work = score_work(p)
        if work > self.budget:
            return f"{work:,} floats of scores exceed one tile ({self.budget:,}): tiled instead"
        return None

    def why_not_automatic(self, p: Problem) -> str | None:
        if _switch.is_off():
            return "switched off on this thread (direct.off())"
        if p.needs_grad:  # forced, autograd differentiates the tensor ops (the pairs are kept)
            return "gradients needed: the chunked backend recomputes its tiles in the backward instead of keeping them"
        return self.why_not(p)

    def run(self, p: Problem):
        b, h, lq, lk = p.shape
        s = tile_scores(p, (0, lq), (0, lk))
        if p.mask is not None:
            s = s.masked_fill(~evaluate_mask(p.mask, b, h, (0, lq), (0, lk), p.device), float("-inf"))
        w = torch.softmax(s, -1)  # bf16/fp16 scores: PyTorch sums in float32 and rounds once
        # a row with nothing visible (all -inf) gives zeros, as in the chunked backend, not NaN;
        # a NaN or +inf score still gives NaN, as there
        w = w.masked_fill(torch.isneginf(s.amax(-1, keepdim=True)), 0.0)
        return (w if w.dtype == p.v.dtype else w.to(p.v.dtype)) @ p.v, (w if p.need_weights else None)


BACKENDS.register("direct")(DirectBackend())
