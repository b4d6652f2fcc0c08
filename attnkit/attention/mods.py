"""Score modifiers with FlexAttention's signature ``score_mod(score, b, h, q_idx, kv_idx)``.

Each modifier is an ``nn.Module`` (so learned ones train and save) with a ``kind`` that tells
the fused backends how they may apply it:

* ``"bias"``: ``score + f(b, h, q_idx, kv_idx)``; fused kernels add it as a float mask;
* ``"scale"``: ``score * c`` with ``c = self.factor()``; folded into the query scaling;
* ``"general"``: anything else (soft-capping, user functions); runs on the chunked or
  reference backend, or FlexAttention on GPU.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

MODS: Registry[type[ScoreMod]] = Registry("score modifier")


class ScoreMod(nn.Module):
    """Base class; subclasses implement ``forward(score, b, h, q_idx, kv_idx)``."""

    kind = "general"
    needs_heads = False
    relative = False  # True when the term depends only on (h, q_idx - kv_idx): one cached band serves every tile

    def bias(self, b, h, q_idx, kv_idx, dtype) -> torch.Tensor:
        """For ``bias`` modifiers: the added term alone (override when a direct formula is
        cheaper than ``forward(0, ...)``), in ``dtype``: a term a user function computes on
        the integer index tensors comes out in the default float dtype otherwise."""
        return self(torch.zeros((), dtype=dtype, device=q_idx.device), b, h, q_idx, kv_idx).to(dtype)


@MODS.register("alibi")
class ALiBi(ScoreMod):
    """ALiBi (Press et al., 2022): ``score - m_h * |i - j|`` with head slopes
    ``m_h = 2^(-8 (h+1) / H)``; symmetric, so it also serves bidirectional encoders
    (under a causal mask it equals the original)."""

    kind = "bias"
    needs_heads = True
    relative = True

    def __init__(self, heads: int):
        super().__init__()
        if heads <= 0:
            raise ConfigError(f"alibi: heads must be > 0, got {heads}")
        slopes = torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)])
        self.slopes = nn.Buffer(slopes)

    def forward(self, score, b, h, q_idx, kv_idx):
        slopes = self.slopes.to(score.dtype) if score.is_floating_point() else self.slopes
        return score - slopes[h] * (q_idx - kv_idx).abs()

    def cache_key(self) -> tuple:
        """ALiBi's bias depends only on the head count: layers can share one cached copy."""
        return ("alibi", tuple(self.slopes.tolist()))

    def bias(self, b, h, q_idx, kv_idx, dtype):
        # two passes over float tiles instead of forward's four over int64 ones
        dist = torch.sub(q_idx.to(dtype), kv_idx.to(dtype)).abs_()  # (1, 1, Lq, Lk)
        return dist * (-self.slopes.to(dtype)[h])  # (1, H, Lq, Lk)


@MODS.register("relative_bias")
class RelativePositionBias(ScoreMod):
    """T5 relative-position bias: a learned scalar per (head, log-spaced distance bucket)."""

    kind = "bias"
    needs_heads = True
    relative = True

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        if heads <= 0 or num_buckets < 2 or max_distance < 1:
            raise ConfigError("relative_bias: needs heads > 0, num_buckets >= 2, max_distance >= 1, got "
                              f"{heads}, {num_buckets}, {max_distance}")
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.table = nn.Parameter(torch.randn(num_buckets, heads) * 0.02)

    def bucket(self, rel: torch.Tensor) -> torch.Tensor:
        """T5's bucket of ``rel = kv_idx - q_idx``: exact for small distances, log-spaced after."""
        n = self.num_buckets
        out = torch.zeros_like(rel)
        if self.bidirectional:
            n //= 2
            out = out + (rel > 0).long() * n
            rel = rel.abs()
        else:
            rel = (-rel).clamp(min=0)
        exact = n // 2
        big = exact + (
            torch.log(rel.float().clamp(min=1) / exact) / math.log(self.max_distance / exact) * (n - exact)
        ).long()
        big = big.clamp(max=n - 1)
        return out + torch.where(rel < exact, rel, big)

    def forward(self, score, b, h, q_idx, kv_idx):
        bias = self.table.t()[h, self.bucket(kv_idx - q_idx)]  # (1, H, Lq, Lk)
        return score + bias.to(score.dtype) if score.is_floating_point() else score + bias


@MODS.register("softcap")
class SoftCap(ScoreMod):
    """Tanh soft-capping (Gemma 2): ``cap * tanh(score / cap)``."""

    def __init__(self, cap: float = 50.0):
        super().__init__()
        if cap <= 0:
            raise ConfigError(f"softcap: cap must be > 0, got {cap}")
        self.cap = float(cap)

    def forward(self, score, b, h, q_idx, kv_idx):
        return self.cap * torch.tanh(score / self.cap)


@MODS.register("temperature")
class Temperature(ScoreMod):
    """Divide scores by a temperature ``t`` (learnable if asked)."""

    kind = "scale"

    def __init__(self, t: float = 1.0, learnable: bool = False):
        super().__init__()
        if t <= 0:
            raise ConfigError(f"temperature: t must be > 0, got {t}")
        log_t = torch.tensor(math.log(t))
        self.log_t = nn.Parameter(log_t) if learnable else nn.Buffer(log_t)

    def factor(self) -> torch.Tensor:
        """The multiplicative factor ``1 / t``."""
        return torch.exp(-self.log_t)

    def forward(self, score, b, h, q_idx, kv_idx):
        return score * self.factor().to(score.dtype)


class CallableMod(ScoreMod):
    """Wraps a user ``score_mod(score, b, h, q_idx, kv_idx) -> score``. Declare
    ``kind="bias"`` when it only adds a term that does not depend on ``score``: the fused
    kernels can then run it."""

    def __init__(self, fn: Callable, kind: str = "general"):
        super().__init__()
        if not callable(fn):
            raise ConfigError(f"mods: expected a name or a callable score_mod, got {type(fn).__name__}")
        if kind not in ("bias", "general"):
            raise ConfigError(f"mods: kind must be 'bias' or 'general', got {kind!r}")
        self.fn, self.kind = fn, kind
        self.name = getattr(fn, "__name__", "score_mod")

    def forward(self, score, b, h, q_idx, kv_idx):
        return self.fn(score, b, h, q_idx, kv_idx)


def list_mods(pattern: str = "*") -> list[str]:
    """Names of the registered score modifiers."""
    return MODS.names(pattern)


def build_mod(entry, heads: int, where: str = "mods") -> ScoreMod:
    """Build one modifier from a name (``"alibi"``), a one-key mapping
    (``{"softcap": 30}`` / ``{"relative_bias": {"num_buckets": 16}}``), a module or a callable."""
    if isinstance(entry, ScoreMod):
        return entry
    if callable(entry) and not isinstance(entry, (str, dict)):
        return CallableMod(entry)
    if isinstance(entry, str):
        name, arg = entry, None
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, arg), = entry.items()
    else:
        raise ConfigError(f"{where}: expected a modifier name, a one-key mapping or a callable, got {entry!r}")
    cls = MODS.get(name, where)
    kwargs = dict(arg) if isinstance(arg, dict) else ({} if arg is None else None)
    try:
        if kwargs is None:
            return cls(heads, arg) if cls.needs_heads else cls(arg)
        if cls.needs_heads:
            kwargs.setdefault("heads", heads)
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}.{name}: bad arguments {arg!r}: {e}") from None
