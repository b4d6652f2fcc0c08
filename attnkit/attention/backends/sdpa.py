"""torch's fused ``scaled_dot_product_attention`` for unmasked, unmodified dot-product
scores: one call, any device, with backward. Masked or modified calls go to the
block-sparse backend on CPU (it skips masked tiles, SDPA does not) and FlexAttention on GPU.
"""
from __future__ import annotations

import torch.nn.functional as F

from .base import BACKENDS, Backend, Problem
from .weights import attention_with_weights


class SDPABackend(Backend):
    """Dense fused attention (no mask, no modifiers)."""

    name = "sdpa"

    def why_not(self, p: Problem) -> str | None:
        if not p.score.is_dot:
            return f"score {type(p.score).__name__} is not a dot product"
        if p.mask is not None:
            return "has a mask (SDPA computes masked tiles anyway; blocksparse/flex skip them)"
        if p.mods:
            return f"has score modifiers {[type(m).__name__ for m in p.mods]}"
        return None

    def run(self, p: Problem):
        if p.need_weights:
            return attention_with_weights(p)
        return F.scaled_dot_product_attention(p.qf, p.kf, p.v, scale=p.score.dot_scale), None


BACKENDS.register("sdpa")(SDPABackend())
