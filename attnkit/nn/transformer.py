"""A Transformer encoder built on :class:`attnkit.attention.MultiHeadAttention`, so every
score, mask and modifier of an ``AttentionSpec`` works inside it (ALiBi instead of
positions, a sliding window for long inputs, additive scores...). Pre- or post-norm;
sinusoidal, learned or no position embeddings."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import AttentionSpec, MultiHeadAttention
from ..attention.dropout import Dropout
from ..config import require_positive
from ..errors import ConfigError
from .masking import padding_mask
from .registry import ENCODERS


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """The fixed ``[n, dim]`` sin/cos table of Vaswani et al. (2017)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward block, each residual, norm before (pre) or after (post)."""

    def __init__(self, dim: int, spec: AttentionSpec, ff_dim: int, dropout: float, norm: str):
        super().__init__()
        self.attn = MultiHeadAttention(dim, spec=spec)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = Dropout(dropout)
        self.pre = norm == "pre"

    def forward(self, x, lengths, need_weights: bool = False):
        """Returns ``(x, attention weights or None)``."""
        if self.pre:
            a, w = self.attn(self.norm1(x), lengths=lengths, need_weights=need_weights)
            x = x + self.drop(a)
            return x + self.drop(self.ff(self.norm2(x))), w
        a, w = self.attn(x, lengths=lengths, need_weights=need_weights)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ff(x))), w


def position_limit(options: dict) -> int | None:
    """The input length a transformer encoder's options allow (``max_len``, default 512), or
    None when it has no position table (``positions: none``) or is not a transformer."""
    if options.get("type", "transformer") != "transformer" or options.get("positions", "sinusoidal") == "none":
        return None
    return options.get("max_len", 512)


@ENCODERS.register("transformer")
class TransformerEncoder(nn.Module):
    """``(x [B, T, D], lengths) -> [B, T, dim]``; ``attention`` is an AttentionSpec or its dict
    (``{score: scaled_dot, heads: 4, mods: [alibi]}``). ``last_weights`` keeps each layer's
    attention after a call with ``need_weights=True``. ``input_scale`` multiplies the input before
    the positions are added: sinusoidal positions have norm ~sqrt(dim / 2), attnkit's word vectors
    start near 0.1 sqrt(dim), so at 1.0 the positions dominate; sqrt(dim) (16 at 256) is the
    scaling of Vaswani et al. (2017), which masked-LM pretraining needs to get past guessing by
    piece frequency (benchmarks/pretrain.py)."""

    def __init__(self, in_dim: int, dim: int = 128, layers: int = 2, ff_dim: int | None = None,
                 attention: AttentionSpec | dict | None = None, dropout: float = 0.1, norm: str = "pre",
                 positions: str = "sinusoidal", max_len: int = 512, input_scale: float = 1.0):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ConfigError(f"encoder.norm: must be 'pre' or 'post', got {norm!r}")
        if positions not in ("sinusoidal", "learned", "none"):
            raise ConfigError(f"encoder.positions: must be sinusoidal, learned or none, got {positions!r}")
        require_positive("encoder", dim=dim, layers=layers, max_len=max_len, input_scale=input_scale)
        spec = attention if isinstance(attention, AttentionSpec) else AttentionSpec.from_dict(
            {"heads": 4, **(attention or {})}, where="encoder.attention")
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.positions, self.max_len, self.input_scale = positions, max_len, input_scale
        if positions == "learned":
            self.pos = nn.Embedding(max_len, dim)
        elif positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(max_len, dim), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(dim, spec, ff_dim or 4 * dim, dropout, norm) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim) if norm == "pre" else nn.Identity()
        self.drop = Dropout(dropout)
        self.out_dim = dim
        self.last_weights: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        """Encodes; padded positions are zero in the output and masked as keys."""
        t = x.shape[1]
        x = self.proj(x)
        if self.input_scale != 1.0:  # Vaswani et al.'s sqrt(dim): token identity not drowned by the positions
            x = x * self.input_scale
        if self.positions != "none":
            if t > self.max_len:
                raise ConfigError(f"encoder.max_len: input length {t} exceeds max_len={self.max_len} "
                                  f"of {self.positions} positions; raise max_len or use positions: none with alibi")
            x = x + (self.pos.weight[:t] if self.positions == "learned" else self.pos_table[:t])
        x = self.drop(x)
        weights = []
        for layer in self.layers:
            x, w = layer(x, lengths, need_weights)
            weights.append(w)
        self.last_weights = weights if need_weights else None
        return self.final_norm(x) * padding_mask(lengths, t).unsqueeze(-1).to(x.dtype)
