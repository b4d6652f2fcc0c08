"""Poolers: ``(h [B, T, D], lengths [B]) -> (pooled [B, D], weights [B, heads, T] or None)``.
Padding never contributes; the attention pooler takes any attnkit score."""
from __future__ import annotations

import torch
from torch import nn

from ..attention import AttentionPooling
from ..attention.scores import score_options
from .masking import padding_mask
from .registry import POOLERS


@POOLERS.register("attention")
class AttentionPooler(nn.Module):
    """Learned-query attention pooling (Bahdanau additive by default; any attnkit score)."""

    def __init__(self, dim: int, score="additive", heads: int = 1, **score_options):
        super().__init__()
        self.out_dim = dim
        self.pool = AttentionPooling(dim, score=score, heads=heads, **score_options)

    @staticmethod
    def known_options(options: dict) -> list[str]:
        """Its own options and those of the chosen score (``hidden`` for additive ...)."""
        score = options.get("score", "additive")
        return ["score", "heads", *(score_options(score) if isinstance(score, str) else [])]

    def forward(self, h, lengths, need_weights: bool = False):
        """Attention-weighted sum of the real positions."""
        return self.pool(h, lengths=lengths, need_weights=need_weights)


class _PlainPooler(nn.Module):
    """A pooler without parameters: output width = input width."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim


@POOLERS.register("mean")
class MeanPooler(_PlainPooler):
    """Mean over real positions (zero for an empty sequence)."""

    def forward(self, h, lengths, need_weights: bool = False):
        """Masked mean."""
        m = padding_mask(lengths, h.shape[1]).unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1), None


@POOLERS.register("max")
class MaxPooler(_PlainPooler):
    """Max over real positions (max-over-time of TextCNN); zero for an empty sequence."""

    def forward(self, h, lengths, need_weights: bool = False):
        """Masked max."""
        m = padding_mask(lengths, h.shape[1]).unsqueeze(-1)
        out = h.masked_fill(~m, float("-inf")).amax(1)
        return torch.where(torch.isinf(out), torch.zeros_like(out), out), None


@POOLERS.register("first")
class FirstPooler(_PlainPooler):
    """The first position (a [CLS]-style token)."""

    def forward(self, h, lengths, need_weights: bool = False):
        """``h[:, 0]``."""
        return h[:, 0], None


@POOLERS.register("last")
class LastPooler(_PlainPooler):
    """The last real position of each sequence (unidirectional RNN summaries)."""

    def forward(self, h, lengths, need_weights: bool = False):
        """``h[b, lengths[b] - 1]``."""
        idx = (lengths - 1).clamp(min=0).to(h.device)
        return h[torch.arange(h.shape[0], device=h.device), idx], None
