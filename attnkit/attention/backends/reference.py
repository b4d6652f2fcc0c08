"""The plain reference: materialise every score, apply modifiers and mask, softmax, weight
the values. Written straight from the formulas, float64-able, no tiling, no fused kernels;
the oracle the tests hold every other backend to. Memory is O(Lq x Lk) (and O(Lq x Lk x
hidden) for additive scores): use it on small inputs only."""
from __future__ import annotations

import torch

from .. import pair_kernel
from ..masks import evaluate_mask
from .base import BACKENDS, Backend, Problem, tile_scores


def masked_softmax(s: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim where ``allowed``; rows with nothing allowed give zeros
    (and zero gradient), never NaN."""
    if allowed is None:
        return torch.softmax(s, dim=-1)
    alive = allowed.any(-1, keepdim=True)
    # Dead rows attend everywhere (finite softmax), then are zeroed: no NaN in value or grad.
    s = s.masked_fill(~(allowed | ~alive), float("-inf"))
    return torch.softmax(s, dim=-1) * alive


class ReferenceBackend(Backend):
    """Materialised attention from the formulas; runs every spec on every device."""

    name = "reference"

    def why_not(self, p: Problem) -> str | None:
        return None

    def run(self, p: Problem):
        b, h, lq, lk = p.shape
        with pair_kernel.off():  # the formula as tensor ops, not the fused additive/MLP kernel
            s = tile_scores(p, (0, lq), (0, lk))
        allowed = None
        if p.mask is not None:
            allowed = evaluate_mask(p.mask, b, h, (0, lq), (0, lk), p.device).expand(s.shape)
        w = masked_softmax(s, allowed)
        return w @ p.v, (w if p.need_weights else None)


BACKENDS.register("reference")(ReferenceBackend())
