"""Block-sparse dot-product attention on CPU, built on PyTorch's fused flash kernel.

The dense CPU kernels (SDPA) compute every score and mask afterwards: causal attention
costs as much as dense. Here the mask is planned into key tiles first (``tiles.py``); each
query block calls the fused kernel once per run of visible tiles (no mask for full runs,
``is_causal`` for the diagonal, a float mask for partial ones), and the partial results are
merged exactly with their log-sum-exp. The backward pass reuses the kernel's own backward:
given the *merged* output and log-sum-exp, each run's gradient is exact (FlashAttention's
identity ``dS = P * (dP - rowsum(dO * O))``), so nothing is recomputed twice.

Bias modifiers (ALiBi, ...) are added as a float mask per tile. A bias with trainable
parameters needs a gradient the fused kernel does not return, so such calls go elsewhere.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import torch.nn.functional as F

from ..masks import evaluate_mask
from .base import (
    BACKENDS,
    BIAS_CACHE_BYTES,
    Backend,
    Problem,
    additive_bias,
    bias_cache_key,
    index_grid,
)
from .band import BandFlash, band_layout
from .threads import threads_for_tiles
from .tiles import KeyTile, QueryBlock, plan_tiles
from .weights import attention_with_weights

PLAN_CACHE_BYTES = 256 << 20  # plans and band layouts kept, least recently used out first
_plans: OrderedDict[tuple, dict] = OrderedDict()


def _plan_bytes(plan: list[QueryBlock]) -> int:
    return sum(t.allowed.numel() for qb in plan for t in qb.tiles if t.allowed is not None)


def _planned(mask, b: int, h: int, lq: int, lk: int, bq: int, bk: int, device) -> tuple[list[QueryBlock], dict]:
    """The tile plan and a dict for what is derived from it (the band layouts), reused across
    calls for masks with a ``cache_key`` (positional masks: causal, window, prefix_lm(n) and
    their combinations). Planning evaluates the mask over every visible tile: measured at
    L = 8192 with a window of 256, 35 ms of a 90 ms forward."""
    key = None if mask is None or mask.cache_key is None else (mask.cache_key, lq, lk, bq, bk, str(device))
    entry = _plans.get(key) if key is not None else None
    if entry is not None:
        with contextlib.suppress(KeyError):  # another thread may have just evicted it: still valid here
            _plans.move_to_end(key)
        return entry["plan"], entry
    plan = plan_tiles(mask, b, h, lq, lk, bq, bk, device, merge=True)
    entry = {"plan": plan}
    if key is not None:
        for qb in plan:  # a partial tile is a view of its block's whole evaluation: keep only the tile
            for t in qb.tiles:
                if t.allowed is not None:
                    t.allowed = t.allowed.clone()
        _plans[key] = entry
        trim_plan_cache()
    return plan, entry


def trim_plan_cache() -> None:
    """Drop least recently used plans until plans and their band masks fit ``PLAN_CACHE_BYTES``."""
    def size(e):
        return _plan_bytes(e["plan"]) + sum(v.mask.numel() * v.mask.element_size()
                                            for k, v in e.items() if k != "plan" and v is not None)
    total = sum(size(e) for e in list(_plans.values()))  # sizes once, not once per eviction
    while len(_plans) > 1 and total > PLAN_CACHE_BYTES:
        with contextlib.suppress(KeyError):
            total -= size(_plans.popitem(last=False)[1])


_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
NEG_INF = float("-inf")


def _relative_band(p: Problem, rows: int) -> torch.Tensor | None:
    """For bias modifiers that depend only on ``(h, q_idx - kv_idx)`` (ALiBi, T5 buckets):
    the bias of ``rows`` queries against every relative offset, ``band[h, i, t] =
    bias(q_idx - kv_idx = i + Lq - t)``, cached. The tile ``(q0, k0)`` is the view
    ``band[..., t0:t0 + width]`` with ``t0 = Lq - q0 + k0`` — a Toeplitz matrix is a sliding
    window over one band. Memory: ``H x rows x (Lq + Lk)`` instead of ``H x Lq x Lk``."""
    bias_mods = [m for m in p.mods if m.kind == "bias"]
    if not all(m.relative for m in bias_mods):
        return None
    _, h, lq, lk = p.shape
    key = bias_cache_key(bias_mods, "band", h, rows, lq, lk, p.device, p.qf.dtype)
    if key is None:
        return None
    return additive_bias(bias_mods, lambda: index_grid(1, h, (lq, lq + rows), (0, lq + lk), p.device),
                         p.qf.dtype, key)


def _tile_mask(p: Problem, qb: QueryBlock, tile, cache: bool = False, block_rows: int = 0) -> torch.Tensor | None:
    """Float mask (bias, with -inf where masked) for one tile, or ``None`` if not needed."""
    b, h, _, _ = p.shape
    bias = None
    if any(m.kind == "bias" for m in p.mods):
        band = _relative_band(p, block_rows) if block_rows and not cache else None
        if band is not None:  # a view into the cached band: nothing built per call
            t0 = p.shape[2] - qb.q0 + tile.k0
            bias = band[:, :, :qb.q1 - qb.q0, t0:t0 + tile.k1 - tile.k0]
        else:
            key = bias_cache_key(p.mods, b, h, qb.q0, qb.q1, tile.k0, tile.k1, p.device, p.qf.dtype) if cache else None
            bias = additive_bias(p.mods, lambda: index_grid(b, h, (qb.q0, qb.q1), (tile.k0, tile.k1), p.device),
                                 p.qf.dtype, key)
    allowed = tile.allowed
    if tile.causal and bias is not None:
        n = qb.q1 - qb.q0
        allowed = torch.ones(n, n, dtype=torch.bool, device=p.device).tril()[None, None]
    if allowed is None:
        return None if bias is None else bias.expand(-1, -1, qb.q1 - qb.q0, -1).to(p.qf.dtype)
    base = torch.zeros((), dtype=p.qf.dtype, device=p.device) if bias is None else bias.to(p.qf.dtype)
    out = base.masked_fill(~allowed, NEG_INF) if bias is not None else torch.zeros(
        allowed.shape, dtype=p.qf.dtype, device=p.device).masked_fill_(~allowed, NEG_INF)
    return out.expand(*out.shape[:2], qb.q1 - qb.q0, tile.k1 - tile.k0)


def _span_tile(p: Problem, k0: int, k1: int, lq: int, full: bool) -> KeyTile:
    """One tile covering all queries and keys ``[k0, k1)`` (its mask re-evaluated if needed)."""
    if full:
        return KeyTile(k0, k1)
    b, h, _, _ = p.shape
    return KeyTile(k0, k1, evaluate_mask(p.mask, b, h, (0, lq), (k0, k1), p.device))


def _calls(p: Problem, plan: list[QueryBlock], block_rows: int):
    """For each query block, the kernel calls: (k0, k1, is_causal, float mask, alive rows)."""
    calls = []
    for qb in plan:
        row = []
        for t in qb.tiles:
            use_causal = t.causal and not any(m.kind == "bias" for m in p.mods)
            mask = None if use_causal else _tile_mask(p, qb, t, block_rows=block_rows)
            alive = None if t.allowed is None or t.causal else t.allowed.any(-1)
            row.append((t.k0, t.k1, use_causal, mask, alive))
        calls.append(row)
    return calls


class _BlockSparseFlash(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, calls, scale, qf, kf, v):
        b, h, lq, _ = qf.shape
        out = qf.new_zeros(b, h, lq, v.shape[-1])
        # the kernel's log-sum-exp is at least float32 (float32 for bf16 inputs), and its
        # backward wants it so: keeping it in the inputs' dtype lost precision and broke bf16
        lse = qf.new_full((b, h, lq), NEG_INF, dtype=torch.promote_types(qf.dtype, torch.float32))
        for qb, row in zip(plan, calls):
            q = qf[:, :, qb.q0:qb.q1]
            o_acc = l_acc = None
            for k0, k1, causal, mask, alive in row:
                o, l = _flash(q, kf[:, :, k0:k1], v[:, :, k0:k1], 0.0, causal, attn_mask=mask, scale=scale)
                if alive is not None:  # the kernel reports lse=0 for rows it saw fully masked
                    l = l.masked_fill(~alive, NEG_INF)
                if o_acc is None:
                    o_acc, l_acc = o, l
                    continue
                l_new = torch.logaddexp(l_acc, l)
                l_safe = torch.where(torch.isinf(l_new), torch.zeros_like(l_new), l_new)
                o_acc = o_acc * torch.exp(l_acc - l_safe).unsqueeze(-1) + o * torch.exp(l - l_safe).unsqueeze(-1)
                l_acc = l_new
            if o_acc is not None:
                out[:, :, qb.q0:qb.q1] = o_acc
                lse[:, :, qb.q0:qb.q1] = l_acc
        ctx.plan, ctx.calls, ctx.scale = plan, calls, scale
        ctx.mark_non_differentiable(lse)
        ctx.save_for_backward(qf, kf, v, out, lse)
        return out, lse

    @staticmethod
    def backward(ctx, gout, glse):
        qf, kf, v, out, lse = ctx.saved_tensors
        # Fully masked rows: +inf makes P = exp(S - lse) = 0, so their gradient is zero.
        lse = torch.where(torch.isinf(lse), torch.full_like(lse, float("inf")), lse)
        dq, dk, dv = torch.zeros_like(qf), torch.zeros_like(kf), torch.zeros_like(v)
        gout = gout.contiguous()
        with threads_for_tiles():
            _tiles_backward(ctx, gout, qf, kf, v, out, lse, dq, dk, dv)
        return None, None, None, dq, dk, dv


def _tiles_backward(ctx, gout, qf, kf, v, out, lse, dq, dk, dv) -> None:
    """Accumulate every tile run's gradient (the fused kernel's backward) into dq, dk, dv."""
    for qb, row in zip(ctx.plan, ctx.calls):
        s = slice(qb.q0, qb.q1)
        for k0, k1, causal, mask, _ in row:
            gq, gk, gv = _flash_bwd(gout[:, :, s], qf[:, :, s], kf[:, :, k0:k1], v[:, :, k0:k1],
                                    out[:, :, s], lse[:, :, s], 0.0, causal, attn_mask=mask, scale=ctx.scale)
            dq[:, :, s] += gq
            dk[:, :, k0:k1] += gk
            dv[:, :, k0:k1] += gv


def _dense_span(plan: list[QueryBlock], lq: int, lk: int, dense_fraction: float) -> tuple[int, int] | None:
    """The key span ``(k0, k1)`` to run in one fused call when tiling would not pay: the
    visible tiles cover more than ``dense_fraction`` of the span (measured: below that,
    per-tile masks and merges cost more than the work they skip)."""
    spans = [(qb.tiles[0].k0, qb.tiles[-1].k1) for qb in plan if qb.tiles]
    if len(spans) != len(plan):
        return None  # some query rows see nothing: keep the tile path's exact zeros
    k0, k1 = min(s[0] for s in spans), max(s[1] for s in spans)
    visible = sum((qb.q1 - qb.q0) * (t.k1 - t.k0) for qb in plan for t in qb.tiles)
    return (k0, k1) if visible >= dense_fraction * lq * (k1 - k0) else None


class BlockSparseBackend(Backend):
    """Dot-product scores with any mask and bias modifiers, on CPU: fused kernel per visible
    tile run (or one call for all query blocks where their spans form a band); skips masked-out
    tiles."""

    name = "blocksparse"
    block_q = 256
    block_k = 256
    dense_fraction = 0.8
    band_waste = 1.25  # the band (one call for all query blocks) while its padding adds at most 25% keys

    def _one_call(self, p: Problem, plan: list[QueryBlock], k0: int, k1: int) -> torch.Tensor:
        """The whole problem as one fused SDPA call over keys ``[k0, k1)``, with the mask
        (and bias) materialised only where the plan has partial tiles."""
        lq = p.shape[2]
        full = all(t.allowed is None for qb in plan for t in qb.tiles)
        mask = None
        if not full or any(m.kind == "bias" for m in p.mods):
            mask = _tile_mask(p, QueryBlock(0, lq, []), _span_tile(p, k0, k1, lq, full), cache=full)
        return F.scaled_dot_product_attention(p.qf, p.kf[:, :, k0:k1], p.v[:, :, k0:k1], attn_mask=mask,
                                              scale=p.score.dot_scale)

    def why_not(self, p: Problem) -> str | None:
        if p.device.type != "cpu":
            return "CPU only (built on the CPU flash kernel); FlexAttention covers GPUs"
        if not p.score.is_dot:
            return f"score {type(p.score).__name__} is not a dot product"
        if p.qf.dtype not in (torch.float32, torch.float64, torch.bfloat16):
            return f"dtype {p.qf.dtype} not supported by the CPU flash kernel"
        general = [type(m).__name__ for m in p.mods if m.kind != "bias"]
        if general:
            return f"modifier(s) {general} are not additive biases"
        if p.needs_grad and any(q.requires_grad for m in p.mods for q in m.parameters()):
            return "a bias modifier has trainable parameters; the fused kernel returns no bias gradient"
        return None

    def run(self, p: Problem):
        b, h, lq, lk = p.shape
        if p.mask is not None and p.mask.is_causal and not p.mods and not p.need_weights:
            # Plain causal: the fused kernel's own is_causal already skips the upper triangle
            # (measured 1.9x faster than dense at 8192); one call beats our tiles there.
            return F.scaled_dot_product_attention(p.qf, p.kf, p.v, is_causal=True, scale=p.score.dot_scale), None
        if p.need_weights:
            return attention_with_weights(p)
        bq = self.block_q
        if p.mask is None and p.mods:
            # Unmasked bias (ALiBi over long sequences): every query block sees every key, so
            # fewer, taller blocks pay; the band they read is H x bq x (Lq + Lk) floats, kept
            # under 256 MiB (measured at 8192: 1024 rows 478 ms, 256 rows 538 ms, SDPA 466 ms).
            band_row = h * (lq + lk) * p.qf.element_size()
            bq = max(bq, min(1024, 1 << max(0, ((256 << 20) // band_row).bit_length() - 1)))
        plan, derived = _planned(p.mask, b, h, lq, lk, bq, self.block_k, p.device)
        span = _dense_span(plan, lq, lk, self.dense_fraction)
        if span is not None and any(m.kind == "bias" for m in p.mods):
            # one call needs the whole bias: only when it can be cached (else tiles build it in pieces)
            fits = h * lq * (span[1] - span[0]) * p.qf.element_size() <= BIAS_CACHE_BYTES  # (1, H, Lq, Lk)
            if not fits or bias_cache_key(p.mods) is None:
                span = None
        if span is not None:
            return self._one_call(p, plan, *span), None
        qf, kf, v = _one_head_size(p.qf, p.kf, p.v)
        dv = p.v.shape[-1]  # the output's own width, cut back to after the kernel
        if not p.mods:  # bias modifiers stay on the tile path (their per-tile views are cached bands)
            key = ("band", p.qf.dtype, self.band_waste)  # cached plans are positional: one layout for any B, H
            if key not in derived:
                derived[key] = band_layout(plan, lq, lk, b, h, p.qf.dtype, p.device, self.band_waste)
                trim_plan_cache()
            layout = derived[key]
            if layout is not None:
                with threads_for_tiles():
                    return _cut(BandFlash.apply(layout, p.score.dot_scale, qf, kf, v), dv), None
        calls = _calls(p, plan, bq)
        with threads_for_tiles():  # many short parallel regions: leave cores other processes hold to them
            out, _ = _BlockSparseFlash.apply(plan, calls, p.score.dot_scale, qf, kf, v)
        return _cut(out, dv), None


def _cut(out: torch.Tensor, dv: int) -> torch.Tensor:
    """The output's first ``dv`` features (the values' own width), contiguous as before."""
    return out if out.shape[-1] == dv else out[..., :dv].contiguous()


def _one_head_size(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor):
    """The CPU flash kernel takes one head size for queries, keys and values: the narrower side
    gets zero features (queries and keys: the dot products are unchanged and the scale is passed
    explicitly; values: extra output columns, cut off after). Differentiable, a no-op when equal."""
    d, dv = qf.shape[-1], v.shape[-1]
    if d == dv:
        return qf, kf, v
    if dv < d:
        return qf, kf, F.pad(v, (0, d - dv))
    return F.pad(qf, (0, dv - d)), F.pad(kf, (0, dv - d)), v


BACKENDS.register("blocksparse")(BlockSparseBackend())
