"""What every backend receives (:class:`Problem`) and answers (:class:`Backend`), plus the
small helpers they share: index grids, score modifiers, row liveness."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ...registry import Registry
from ..masks import MaskMod
from ..mods import ScoreMod
from ..scores import Score

BACKENDS: Registry[Backend] = Registry("attention backend")


@dataclass
class Problem:
    """One attention call, after the score's ``prepare`` and head expansion.

    ``qf [B, H, Lq, F]``, ``kf [B, H, Lk, F]``, ``v [B, H, Lk, Dv]``. For dot-product scores
    ``scale`` modifiers are already folded into ``qf``; fused kernels take ``score.dot_scale``
    as their scale.
    """

    qf: torch.Tensor
    kf: torch.Tensor
    v: torch.Tensor
    score: Score
    mask: MaskMod | None = None
    mods: list[ScoreMod] = field(default_factory=list)
    need_weights: bool = False

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, H, Lq, Lk)``."""
        b, h, lq, _ = self.qf.shape
        return b, h, lq, self.kf.shape[-2]

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.qf.device

    def params(self) -> list[torch.Tensor]:
        """Trainable tensors used inside ``score.block`` and the modifiers."""
        mods = [p for m in self.mods for p in m.parameters()]
        return [p for p in list(self.score.parameters()) + mods if p.requires_grad]

    @property
    def needs_grad(self) -> bool:
        """Whether autograd will want gradients out of this call."""
        if not torch.is_grad_enabled():
            return False
        return any(t.requires_grad for t in (self.qf, self.kf, self.v)) or bool(self.params())


class Backend:
    """A way to run attention. ``why_not`` returns ``None`` when it can run ``p`` (else the
    reason); ``run`` returns ``(out [B,H,Lq,Dv], weights [B,H,Lq,Lk] or None)``."""

    name = "backend"

    def why_not(self, p: Problem) -> str | None:
        raise NotImplementedError

    def why_not_automatic(self, p: Problem) -> str | None:
        """Why the dispatcher does not pick it for ``p`` by itself (it may still be forced):
        by default, the same as :meth:`why_not`."""
        return self.why_not(p)

    def run(self, p: Problem) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def index_grid(batch: int, heads: int, q_range: tuple[int, int], kv_range: tuple[int, int], device):
    """Broadcastable ``(b, h, q_idx, kv_idx)`` index tensors for a tile."""
    return (
        torch.arange(batch, device=device).view(-1, 1, 1, 1),
        torch.arange(heads, device=device).view(1, -1, 1, 1),
        torch.arange(*q_range, device=device).view(1, 1, -1, 1),
        torch.arange(*kv_range, device=device).view(1, 1, 1, -1),
    )


def apply_mods(s: torch.Tensor, mods, grid) -> torch.Tensor:
    """Apply score modifiers in order to a tile of scores. Scores keep their dtype: a user's
    modifier computing in float32 (``(q - kv).float()``) would otherwise turn bf16 scores into
    float32 ones that no longer multiply bf16 values."""
    dtype = s.dtype
    for m in mods:
        s = m(s, *grid)
    return s if s.dtype == dtype or not s.is_floating_point() else s.to(dtype)


BIAS_CACHE_BYTES = 512 << 20
_bias_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def bias_cache_key(mods, *where) -> tuple | None:
    """A key for caching the summed bias of ``mods`` over a region, or ``None`` when some
    bias modifier is not cacheable (trainable, or without a ``cache_key``)."""
    keys = []
    for m in mods:
        if m.kind != "bias":
            continue
        k = m.cache_key() if hasattr(m, "cache_key") else None
        if k is None or any(x.requires_grad for x in m.parameters()):
            return None
        keys.append(k)
    return (tuple(keys), *where) if keys else None


def additive_bias(mods, grid, dtype, cache_key: tuple | None = None) -> torch.Tensor | None:
    """The summed term of ``bias``-kind modifiers on a tile (``None`` if there are none).
    ``grid`` is the tile's ``index_grid`` or a function making it (called on a cache miss).

    With a ``cache_key`` the result is kept (up to ``BIAS_CACHE_BYTES`` in all, least
    recently used out first): a fixed bias such as ALiBi over a whole sequence is then built
    once per shape, as users of SDPA precompute it, not on every call."""
    if cache_key is not None and cache_key in _bias_cache:
        _bias_cache.move_to_end(cache_key)
        return _bias_cache[cache_key]
    bias = None
    grid = grid() if callable(grid) else grid
    for m in mods:
        if m.kind == "bias":
            term = m.bias(*grid, dtype)
            bias = term if bias is None else bias + term
    if cache_key is not None and bias is not None:
        size = bias.numel() * bias.element_size()
        if size <= BIAS_CACHE_BYTES:
            _bias_cache[cache_key] = bias
            while sum(t.numel() * t.element_size() for t in _bias_cache.values()) > BIAS_CACHE_BYTES:
                _bias_cache.popitem(last=False)
    return bias


def _rows(t: torch.Tensor, span) -> torch.Tensor:
    """``t[:, :, span[0]:span[1]]``; ``t`` itself when the span is all of it (a small call's one
    tile: a slice is a tensor op, ~4 us on a 2-core Xeon)."""
    return t if span[0] == 0 and span[1] == t.shape[2] else t[:, :, span[0]:span[1]]


def tile_scores(p: Problem, q_range, kv_range, qf=None, kf=None, keep: bool = False):
    """Modified scores of one tile (mask not applied); with ``keep``, ``(scores, state)``
    where ``state`` is what ``score.block_keep`` keeps for ``score.block_backward``."""
    b, h, _, _ = p.shape
    qf = _rows(p.qf, q_range) if qf is None else qf
    kf = _rows(p.kf, kv_range) if kf is None else kf
    s, state = p.score.block_keep(qf, kf) if keep else (p.score.block(qf, kf), None)
    if p.mods:
        s = apply_mods(s, p.mods, index_grid(b, h, q_range, kv_range, p.device))
    return (s, state) if keep else s
