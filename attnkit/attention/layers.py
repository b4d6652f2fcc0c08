"""Attention modules: plain ``nn.Module``s, usable outside attnkit.

* :class:`Attention` — one head, no projections; queries and keys may differ in length
  and (with ``general``/``additive``/``mlp`` scores) in dim.
* :class:`MultiHeadAttention` — self or cross attention with q/k/v/out projections and
  optional grouped-query heads (``kv_heads``).
* :class:`AttentionPooling` — a learned query per head pools a sequence into one vector.

Each forward returns ``(output, weights or None)`` and records the backend it used in
``self.last_dispatch``; ``explain_dispatch(module, ...)`` tells without running.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from .dropout import Dropout
from .dispatch import Dispatch, choose_backend
from .functional import attend, build_problem
from .masks import key_padding, segment
from .pair_kernel import tracing
from .spec import ATTENTION_LAYERS, AttentionSpec


def runtime_mask(batch: int, lk: int, key_padding_mask=None, lengths=None, segment_ids=None, mask=None) -> list:
    """Masks that come with the data: padding (bool ``[B, Lk]``, True = real token, or
    ``lengths [B]``), segment ids (``[B, L]`` or a ``(q_ids, kv_ids)`` pair), extra mask_mod."""
    out = []
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise ShapeError(f"key_padding_mask: expected a bool tensor [B, Lk], got "
                             f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)}")
        if tuple(key_padding_mask.shape) != (batch, lk):
            raise ShapeError(f"key_padding_mask: expected shape [{batch}, {lk}] (batch, key length), "
                             f"got {list(key_padding_mask.shape)}")
        out.append(key_padding(mask=key_padding_mask))
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (batch,):
            raise ShapeError(f"lengths: expected a tensor of shape [{batch}], got "
                             f"{list(getattr(lengths, 'shape', [])) or type(lengths).__name__}")
        lo, hi = _length_range(lengths)
        if lo < 0 or hi > lk:
            raise ShapeError(f"lengths: values must be in [0, {lk}], got {lengths.tolist()}")
        if lo < lk or tracing():  # every key real: nothing to hide (an exported graph keeps the mask for later batches)
            out.append(key_padding(lengths=lengths))
    if segment_ids is not None:
        q_ids, kv_ids = segment_ids if isinstance(segment_ids, (tuple, list)) else (segment_ids, None)
        out.append(segment(q_ids, kv_ids))
    if mask is not None:
        out.append(mask)
    return out


def real_positions(x, key_padding_mask=None, lengths=None) -> torch.Tensor | None:
    """Bool ``[B, L, 1]``: True at the real (not padded) positions of ``x [B, L, D]``, from a
    padding mask and/or lengths; None when there is no padding information (or shapes that
    do not fit, left for the mask checks to report)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return None
    b, n = x.shape[:2]
    real = None
    if isinstance(key_padding_mask, torch.Tensor) and tuple(key_padding_mask.shape) == (b, n):
        real = key_padding_mask.to(device=x.device, dtype=torch.bool)
    if isinstance(lengths, torch.Tensor) and tuple(lengths.shape) == (b,) and (tracing() or not _covers(lengths, n)):
        by_length = torch.arange(n, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        real = by_length if real is None else real & by_length
    return None if real is None else real.unsqueeze(-1)


def _length_range(lengths: torch.Tensor) -> tuple:
    """``(min, max)`` of ``lengths`` as Python numbers, ``(0, 0)`` when empty; not ``int()``
    (a float length 6.5 is past 6). One read of the values (``tolist``) instead of a
    reduction and a read per bound: ~3 us each on a 2-core Xeon, in every small call."""
    values = lengths.tolist()
    return (min(values), max(values)) if values else (0, 0)


def _covers(lengths: torch.Tensor, n: int) -> bool:
    """Whether every one of ``lengths`` is at least ``n`` (no padding: a batch of one, or of
    equal lengths), so a padding mask would hide nothing."""
    return lengths.numel() > 0 and _length_range(lengths)[0] >= n


def zeroed(t, real: torch.Tensor | None):
    """``t`` with the positions that are not ``real`` set to 0, so a NaN or inf in padding
    (which no valid output may depend on) cannot reach one through ``0 * nan`` in the
    weighted sum."""
    if real is None or not isinstance(t, torch.Tensor) or t.shape[:2] != real.shape[:2]:
        return t
    return torch.where(real, t, torch.zeros((), dtype=t.dtype, device=t.device))


def zero_padding(x, key_padding_mask=None, lengths=None):
    """``x [B, L, D]`` with its padded positions set to 0 (see :func:`zeroed`)."""
    return zeroed(x, real_positions(x, key_padding_mask, lengths))


def check_float(name: str, t: torch.Tensor, module: nn.Module | None = None) -> None:
    """``t`` must be floating point, in the dtype of ``module``'s (first) parameter when it has one."""
    if not t.dtype.is_floating_point:
        raise ShapeError(f"{name}: expected a floating-point tensor, got {t.dtype} (token ids go through an "
                         f"embedding first)")
    p = next(module.parameters(), None) if module is not None else None
    if p is not None and p.dtype != t.dtype and not torch.is_autocast_enabled(t.device.type):  # autocast mixes them
        raise ShapeError(f"{name}: dtype {t.dtype} differs from the module's {p.dtype}; convert one with "
                         f".to({p.dtype}) or .to({t.dtype})")


def _score_config(score, options: dict):
    """The spec's ``score``: a name with its constructor options (``{"name": "mlp", "hidden":
    64}``), else the name, module or callable as given. Options beside a module or callable
    would be dropped silently: an error instead."""
    if not options:
        return score
    if not isinstance(score, str):
        raise ConfigError(f"score options ({', '.join(sorted(options))}) apply to a registered score name, not to "
                          f"{type(score).__name__} {getattr(score, '__name__', '')}".rstrip())
    return {"name": score, **options}


class _AttentionBase(nn.Module):
    def _setup(self, spec: AttentionSpec, q_dim: int, k_dim: int):
        self.spec = spec
        self.score = spec.build_score(q_dim, k_dim)
        self.static_mask = spec.build_mask()
        self.mods = nn.ModuleList(spec.build_mods())
        self.last_dispatch: Dispatch | None = None

    def _masks(self, batch, lk, **runtime):
        return [self.static_mask] + runtime_mask(batch, lk, **runtime)

    def _attend(self, q, k, v, masks, need_weights, kf=None):
        out, w, self.last_dispatch = attend(q, k, v, self.score, masks, list(self.mods), need_weights,
                                            self.spec.backend, kf=kf)
        return out, w


class Attention(_AttentionBase):
    """Single-head attention of ``query [B, Lq, Dq]`` over ``key [B, Lk, Dk]`` /
    ``value [B, Lk, Dv]`` with any score, mask and modifier. No projections."""

    def __init__(self, q_dim: int, k_dim: int | None = None, score="scaled_dot", mask=(), mods=(),
                 backend: str = "auto", **score_options):
        super().__init__()
        k_dim = k_dim or q_dim
        score_cfg = _score_config(score, score_options)
        spec = AttentionSpec(score=score_cfg, mask=list(mask) if isinstance(mask, (list, tuple)) else [mask],
                             mods=list(mods) if isinstance(mods, (list, tuple)) else [mods], backend=backend)
        self._setup(spec, q_dim, k_dim)

    def inputs(self, query, key=None, value=None, **runtime):
        """``(q, k, v, masks)`` as ``attend`` takes them (rank 4, one head)."""
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ShapeError(f"{name}: expected rank 3 [B, L, D], got "
                                 f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            check_float(name, t, self.score)
        masks = self._masks(key.shape[0], key.shape[1], **runtime)
        return query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), masks

    def forward(self, query, key=None, value=None, *, key_padding_mask=None, lengths=None, segment_ids=None,
                mask=None, need_weights: bool = False, kf=None):
        """Returns ``(out [B, Lq, Dv], weights [B, Lq, Lk] or None)``. ``kf``: the keys as
        ``self.score.prepare_keys(key.unsqueeze(1))`` gave them (a decoder's cache)."""
        # padding describes the keys: clean keys and values (queries at padding give outputs no one reads)
        key = query if key is None else key
        value = key if value is None else value
        real = real_positions(key, key_padding_mask, lengths)  # worked out once for keys and values
        same = value is key
        key = zeroed(key, real)
        value = key if same else zeroed(value, real)
        *qkv, masks = self.inputs(query, key, value, key_padding_mask=key_padding_mask, lengths=lengths,
                                  segment_ids=segment_ids, mask=mask)
        out, w = self._attend(*qkv, masks, need_weights, kf)
        return out.squeeze(1), (w.squeeze(1) if w is not None else None)


class MultiHeadAttention(_AttentionBase):
    """Multi-head self/cross attention over ``x [B, Lq, E]`` (and ``context [B, Lk, kv_dim]``).

    Build from arguments or an :class:`AttentionSpec` (``spec=``); every score, mask and
    modifier works per head.
    """

    def __init__(self, embed_dim: int, heads: int = 1, *, kv_dim: int | None = None, spec: AttentionSpec | None = None,
                 bias: bool = True, **spec_fields):
        super().__init__()
        spec = spec or AttentionSpec(heads=heads, **spec_fields)
        if embed_dim <= 0 or embed_dim % spec.heads:
            raise ShapeError(f"embed_dim ({embed_dim}) must be > 0 and divisible by heads ({spec.heads})")
        self.embed_dim, self.heads = embed_dim, spec.heads
        self.kv_heads = spec.kv_heads or spec.heads
        self.head_dim = embed_dim // spec.heads
        kv_dim = kv_dim or embed_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, self.kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = Dropout(spec.dropout)
        self._setup(spec, self.head_dim, self.head_dim)

    def _split(self, t, heads):
        b, n, _ = t.shape
        return t.view(b, n, heads, self.head_dim).transpose(1, 2)  # (B, h, L, hd)

    def inputs(self, x, context=None, **runtime):
        """``(q, k, v, masks)`` as ``attend`` takes them (projected, split into heads)."""
        q, k, v, context = self._qkv(x, context)
        return q, k, v, self._masks(x.shape[0], context.shape[1], **runtime)

    def _qkv(self, x, context):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ShapeError(f"x: expected [B, L, {self.embed_dim}], got "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        context = x if context is None else context
        check_float("x", x, self)
        if context is not x:
            check_float("context", context, self)
        if context.dim() != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.k_proj.in_features:
            raise ShapeError(f"context: expected [{x.shape[0]}, Lk, {self.k_proj.in_features}], got {list(context.shape)}")
        q = self._split(self.q_proj(x), self.heads)
        k = self._split(self.k_proj(context), self.kv_heads)
        v = self._split(self.v_proj(context), self.kv_heads)
        return q, k, v, context

    def project_kv(self, context):
        """Keys and values of ``context [B, Lk, kv_dim]``, split into heads (``[B, kv_heads, Lk,
        head_dim]`` each): computed once and passed to :meth:`forward` as ``kv=`` (incremental
        decoding keeps them as a cache)."""
        return self._split(self.k_proj(context), self.kv_heads), self._split(self.v_proj(context), self.kv_heads)

    def forward(self, x, context=None, *, key_padding_mask=None, lengths=None, segment_ids=None, mask=None,
                need_weights: bool = False, kv=None):
        """Returns ``(out [B, Lq, E], weights [B, heads, Lq, Lk] or None)``. ``kv``: keys and
        values from :meth:`project_kv` instead of projecting ``context``."""
        if kv is not None:
            if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.embed_dim:
                raise ShapeError(f"x: expected [B, L, {self.embed_dim}], got "
                                 f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
            k, v = kv
            q = self._split(self.q_proj(x), self.heads)
            masks = self._masks(x.shape[0], k.shape[2], key_padding_mask=key_padding_mask, lengths=lengths,
                                segment_ids=segment_ids, mask=mask)
        else:
            # padding describes the keys: clean them (in self-attention the queries keep their own values)
            context = zero_padding(x if context is None else context, key_padding_mask, lengths)
            q, k, v, masks = self.inputs(x, context, key_padding_mask=key_padding_mask, lengths=lengths,
                                         segment_ids=segment_ids, mask=mask)
        out, w = self._attend(q, k, v, masks, need_weights)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.embed_dim)  # (B, Lq, E)
        return self.out_proj(self.dropout(out)), w


class AttentionPooling(_AttentionBase):
    """Pools ``x [B, L, D]`` into ``[B, D]`` with a learned query per head (each head attends
    over its ``D / heads`` slice). Default score: additive (Bahdanau), as in the classic
    "RNN -> attention -> classifier" models."""

    def __init__(self, dim: int, score="additive", heads: int = 1, mods=(), backend: str = "auto", **score_options):
        super().__init__()
        if dim <= 0 or dim % heads:
            raise ShapeError(f"dim ({dim}) must be > 0 and divisible by heads ({heads})")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        score_cfg = _score_config(score, score_options)
        spec = AttentionSpec(score=score_cfg, mods=list(mods), heads=heads, backend=backend)
        self.query = nn.Parameter(torch.randn(heads, 1, self.head_dim) / self.head_dim ** 0.5)
        self._setup(spec, self.head_dim, self.head_dim)

    def inputs(self, x, **runtime):
        """``(q, k, v, masks)`` as ``attend`` takes them (the learned query per head)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"x: expected [B, L, {self.dim}], got "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        check_float("x", x, self.score)  # the learned query follows x's dtype; a score's own weights do not
        b, n, _ = x.shape
        kv = x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, h, L, hd)
        q = self.query.unsqueeze(0).expand(b, -1, -1, -1)  # (B, h, 1, hd)
        q = q if q.dtype == x.dtype else q.to(x.dtype)
        return q, kv, kv, self._masks(b, n, **runtime)

    def forward(self, x, *, key_padding_mask=None, lengths=None, need_weights: bool = False):
        """Returns ``(pooled [B, D], weights [B, heads, L] or None)``."""
        x = zero_padding(x, key_padding_mask, lengths)
        q, k, v, masks = self.inputs(x, key_padding_mask=key_padding_mask, lengths=lengths)
        out, w = self._attend(q, k, v, masks, need_weights)
        return out.reshape(x.shape[0], self.dim), (w.squeeze(2) if w is not None else None)


def explain_dispatch(module: _AttentionBase, *inputs, need_weights: bool = False, **runtime) -> Dispatch:
    """Which backend ``module(*inputs, **runtime)`` would use and why, without running it."""
    q, k, v, masks = module.inputs(*inputs, **runtime)
    p = build_problem(q, k, v, module.score, masks, list(module.mods), need_weights)
    return choose_backend(p, module.spec.backend)


ATTENTION_LAYERS.register("multi_head")(MultiHeadAttention)
