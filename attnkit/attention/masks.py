"""Attention masks with FlexAttention's signature ``mask_mod(b, h, q_idx, kv_idx) -> bool``.

A mask is called with broadcastable index tensors (``b: [B,1,1,1]``, ``h: [1,H,1,1]``,
``q_idx: [1,1,Lq,1]``, ``kv_idx: [1,1,1,Lk]``) and returns a boolean tensor broadcastable
to ``[B, H, Lq, Lk]``; ``True`` means "may attend". Write masks with tensor operators
(``&``, ``|``, ``~``, ``torch.where``), not Python ``and``/``if``, as for FlexAttention.

:class:`MaskMod` wraps such a function and adds

* combination: ``causal() & window(128)``, ``a | b``, ``~a``;
* an optional ``kv_bounds(q_lo, q_hi, Lk) -> (lo, hi)`` hint: the key range that queries
  ``[q_lo, q_hi)`` can see at most. Backends use it to evaluate the mask only where it can
  be true and to skip the key blocks it removes. A user mask without a hint is evaluated
  over all keys, which is correct, just slower to plan.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError, ShapeError
from ..registry import Registry

Bounds = Callable[[int, int, int], tuple[int, int]]
MASKS: Registry[Callable[..., MaskMod]] = Registry("mask")


def _all_keys(q_lo: int, q_hi: int, lk: int) -> tuple[int, int]:
    return 0, lk


class MaskMod:
    """A ``mask_mod(b, h, q_idx, kv_idx) -> bool`` with a name and a key-range hint."""

    def __init__(self, fn: Callable, name: str | None = None, kv_bounds: Bounds | None = None):
        if not callable(fn):
            raise ConfigError(f"mask: expected a callable mask_mod(b, h, q_idx, kv_idx), got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "mask")
        self.kv_bounds: Bounds = kv_bounds or _all_keys
        self.is_causal = False  # exactly q_idx >= kv_idx: fused kernels have a flag for it
        # a value that names the mask when it depends only on (q_idx, kv_idx) and fixed numbers
        # (causal, window(n), prefix_lm(n) and their combinations): backends may then reuse
        # what they planned for it across calls; None (user masks, masks over tensors) never
        self.cache_key: tuple | None = None

    def __call__(self, b, h, q_idx, kv_idx) -> torch.Tensor:
        return self.fn(b, h, q_idx, kv_idx)

    def __and__(self, other: MaskMod | Callable) -> MaskMod:
        a, o = self, as_mask(other)

        def bounds(q0, q1, lk):
            (l1, h1), (l2, h2) = a.kv_bounds(q0, q1, lk), o.kv_bounds(q0, q1, lk)
            return max(l1, l2), min(h1, h2)

        return _keyed(MaskMod(lambda b, h, q, kv: a(b, h, q, kv) & o(b, h, q, kv), f"({a.name} & {o.name})",
                              bounds), "&", a, o)

    def __or__(self, other: MaskMod | Callable) -> MaskMod:
        a, o = self, as_mask(other)

        def bounds(q0, q1, lk):
            (l1, h1), (l2, h2) = a.kv_bounds(q0, q1, lk), o.kv_bounds(q0, q1, lk)
            if l1 >= h1:
                return l2, h2
            if l2 >= h2:
                return l1, h1
            return min(l1, l2), max(h1, h2)

        return _keyed(MaskMod(lambda b, h, q, kv: a(b, h, q, kv) | o(b, h, q, kv), f"({a.name} | {o.name})",
                              bounds), "|", a, o)

    def __invert__(self) -> MaskMod:
        a = self
        return _keyed(MaskMod(lambda b, h, q, kv: ~a(b, h, q, kv), f"~{a.name}"), "~", a)

    def __repr__(self) -> str:
        return f"MaskMod({self.name})"


def _keyed(m: MaskMod, op: str, *parts: MaskMod) -> MaskMod:
    """``m`` with the cache key ``(op, *part keys)`` when every part has one."""
    keys = [p.cache_key for p in parts]
    m.cache_key = None if any(k is None for k in keys) else (op, *keys)
    return m


def as_mask(mask: MaskMod | Callable) -> MaskMod:
    """Wrap a plain ``mask_mod`` function as a :class:`MaskMod` (no-op for a ``MaskMod``)."""
    return mask if isinstance(mask, MaskMod) else MaskMod(mask)


def combine_masks(masks) -> MaskMod | None:
    """AND together a list of masks (``None`` entries ignored); ``None`` if there are none."""
    out = None
    for m in masks:
        if m is None:
            continue
        out = as_mask(m) if out is None else out & m
    return out


def evaluate_mask(mask: MaskMod, batch: int, heads: int, q_range: tuple[int, int],
                  kv_range: tuple[int, int], device) -> torch.Tensor:
    """Evaluate ``mask`` on the index grid; returns a bool tensor broadcastable to
    ``[batch, heads, q_hi - q_lo, kv_hi - kv_lo]``."""
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    h = torch.arange(heads, device=device).view(1, -1, 1, 1)
    q = torch.arange(*q_range, device=device).view(1, 1, -1, 1)
    kv = torch.arange(*kv_range, device=device).view(1, 1, 1, -1)
    out = mask(b, h, q, kv)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
        raise ShapeError(f"mask {mask.name!r} must return a bool tensor, got "
                         f"{getattr(out, 'dtype', type(out).__name__)}")
    want = (batch, heads, q_range[1] - q_range[0], kv_range[1] - kv_range[0])
    if out.dim() > 4 or any(n not in (1, w) for n, w in zip(out.shape[::-1], want[::-1])):
        raise ShapeError(f"mask {mask.name!r} returned shape {list(out.shape)}, which does not broadcast to "
                         f"[B, H, Lq, Lk] = {list(want)} without growing; it must be built from its index "
                         "arguments (b, h, q_idx, kv_idx)")
    return out.reshape((1,) * (4 - out.dim()) + tuple(out.shape))


def causal() -> MaskMod:
    """Query ``i`` sees keys ``j <= i`` (top-left aligned, as FlexAttention)."""
    m = MaskMod(lambda b, h, q, kv: q >= kv, "causal", lambda q0, q1, lk: (0, min(q1, lk)))
    m.is_causal = True
    m.cache_key = ("causal",)
    return m


def window(size: int) -> MaskMod:
    """Sliding window: query ``i`` sees keys ``j`` with ``|i - j| <= size``.
    Combine with ``causal()`` for a causal (Mistral-style) window."""
    if not isinstance(size, int) or size < 0:
        raise ConfigError(f"mask window: size must be an int >= 0, got {size!r}")
    m = MaskMod(lambda b, h, q, kv: (q - kv).abs() <= size, f"window({size})",
                lambda q0, q1, lk: (max(0, q0 - size), min(lk, q1 + size)))
    m.cache_key = ("window", size)
    return m


def prefix_lm(prefix: int | torch.Tensor) -> MaskMod:
    """Prefix-LM: keys before ``prefix`` (an int or per-batch ``[B]`` tensor) are seen by
    every query; the rest causally."""
    if isinstance(prefix, torch.Tensor):
        p = prefix.long()
        fn = lambda b, h, q, kv: (q >= kv) | (kv < p[b])
        top = int(p.max()) if p.numel() else 0
    else:
        if prefix < 0:
            raise ConfigError(f"mask prefix_lm: prefix must be >= 0, got {prefix}")
        fn = lambda b, h, q, kv: (q >= kv) | (kv < prefix)
        top = prefix
    m = MaskMod(fn, "prefix_lm", lambda q0, q1, lk: (0, min(lk, max(q1, top))))
    if not isinstance(prefix, torch.Tensor):
        m.cache_key = ("prefix_lm", prefix)
    return m


def key_padding(lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> MaskMod:
    """Hide padded keys, given ``lengths`` ``[B]`` (valid keys per row) or a boolean
    ``mask`` ``[B, Lk]`` (``True`` = real token)."""
    if (lengths is None) == (mask is None):
        raise ConfigError("key_padding: give exactly one of lengths=[B] or mask=[B, Lk]")
    if lengths is not None:
        if lengths.dim() != 1:
            raise ShapeError(f"key_padding lengths: expected shape [B], got {list(lengths.shape)}")
        n = lengths.long()
        top = int(n.max()) if n.numel() else 0
        return MaskMod(lambda b, h, q, kv: kv < n[b], "key_padding", lambda q0, q1, lk: (0, min(lk, top)))
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ShapeError(f"key_padding mask: expected a bool tensor [B, Lk], got {mask.dtype} {list(mask.shape)}")
    cols = mask.any(0).nonzero()
    top = int(cols.max()) + 1 if cols.numel() else 0
    return MaskMod(lambda b, h, q, kv: mask[b, kv], "key_padding", lambda q0, q1, lk: (0, min(lk, top)))


def segment(q_ids: torch.Tensor, kv_ids: torch.Tensor | None = None) -> MaskMod:
    """Document masking: query ``i`` sees key ``j`` only when both carry the same segment id
    (``q_ids [B, Lq]``, ``kv_ids [B, Lk]``, default ``q_ids``)."""
    kv_ids = q_ids if kv_ids is None else kv_ids
    if q_ids.dim() != 2 or kv_ids.dim() != 2:
        raise ShapeError(f"segment ids: expected [B, L] tensors, got {list(q_ids.shape)} and {list(kv_ids.shape)}")
    return MaskMod(lambda b, h, q, kv: q_ids[b, q] == kv_ids[b, kv], "segment")


# Registered by call rather than by decorator: mutation testing (mutmut) skips decorated
# functions, and these definitions are what the tests must pin down.
for _factory in (causal, window, prefix_lm, key_padding, segment):
    MASKS.register(_factory.__name__)(_factory)


def list_masks(pattern: str = "*") -> list[str]:
    """Names of the registered masks."""
    return MASKS.names(pattern)


def build_mask(entry, where: str = "mask") -> MaskMod:
    """Build one mask from a spec entry: a name (``"causal"``), a one-key mapping
    (``{"window": 128}`` / ``{"prefix_lm": {"prefix": 4}}``), a ``MaskMod`` or a callable."""
    if isinstance(entry, MaskMod) or (callable(entry) and not isinstance(entry, (str, dict))):
        return as_mask(entry)
    if isinstance(entry, str):
        return MASKS.get(entry, where)()
    if isinstance(entry, dict) and len(entry) == 1:
        (name, arg), = entry.items()
        factory = MASKS.get(name, where)
        try:
            return factory(**arg) if isinstance(arg, dict) else factory(arg)
        except TypeError as e:
            raise ConfigError(f"{where}.{name}: bad arguments {arg!r}: {e}") from None
    raise ConfigError(f"{where}: expected a mask name, a one-key mapping like {{window: 128}} "
                      f"or a callable, got {entry!r}")
