"""Banded execution of a block-sparse plan: one fused kernel call for every query block.

The tile path (``blocksparse.py``) calls the fused kernel once per query block and run of
tiles and merges the runs with their log-sum-exp: at L = 8192 with 256-row blocks that is
dozens of short calls, each opening its own parallel region. When every query block's
visible keys lie in one span of about the same width — sliding windows, causal with a
window, local attention with padding — the spans are gathered into one batched layout
(query block ``j``'s rows against its span's keys, the blocks stacked on the batch axis)
and a single fused call does the forward, a single one the backward, with a per-block mask
assembled from the plan's tiles. Every row sees all its keys in that one call, so nothing
is merged; rows that see nothing come out as zeros with zero gradient (the kernel's own
handling of fully masked rows, every key of such a row being masked there).

The blocks' key windows are overlapping strided views of one padded copy of the keys (and
values), so stacking costs one copy, not one per block; every window has the same width
(narrower spans padded with masked keys), so the band is used only while that padding
wastes little (``max_waste``); its gradient is summed back one window chunk at a time."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .threads import threads_for_tiles
from .tiles import QueryBlock

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


MASK_BYTES = 256 << 20  # a band whose mask would be larger (a mask per head, say) keeps the tile path


@dataclass
class BandLayout:
    """How query blocks and their keys are stacked for one kernel call.

    Block ``j`` (queries ``[j*rows, (j+1)*rows)``) reads the ``width`` keys starting at
    ``j*rows + first`` (``first`` may be negative: keys before 0 and past the end are padding,
    always masked); ``width`` is a multiple of ``rows``. The keys are padded once and the
    blocks' windows are overlapping strided views of them (no copy per block). The kernel
    sees ``[nb, B*H, ...]`` (one mask per block, ``[nb, 1 or B*H, rows, width]``) or, when the
    mask depends on the batch row only (key padding), ``[nb*B, H, ...]`` with the mask
    ``[nb*B, 1, rows, width]``. ``dead``: rows that see no key."""

    rows: int
    width: int
    first: int
    blocks: int
    mask: torch.Tensor
    dead: torch.Tensor | None
    by_batch: bool
    lq: int
    lk: int

    @property
    def _chunks(self) -> int:
        return self.blocks + self.width // self.rows - 1  # key chunks of ``rows`` the windows cover

    def _stack(self, x5: torch.Tensor) -> torch.Tensor:
        """``[nb, B, H, n, F]`` (any strides) in the kernel's 4-d view."""
        nb, b, h, n, f = x5.shape
        if self.by_batch:
            return x5.contiguous().view(nb * b, h, n, f)
        if b == 1 or x5.stride(1) == h * x5.stride(2):  # B and H merge without a copy
            return x5.as_strided((nb, b * h, n, f), (x5.stride(0), x5.stride(2), x5.stride(3), x5.stride(4)))
        return x5.contiguous().view(nb, b * h, n, f)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, H, Lq, F]`` stacked by query block (the last block padded with zeros)."""
        b, h, lq, f = x.shape
        pad = self.blocks * self.rows - lq
        if pad or x.stride(-1) != 1:
            x = torch.cat([x, x.new_zeros(b, h, pad, f)], dim=2) if pad else x.contiguous()
        return self._stack(x.unflatten(2, (self.blocks, self.rows)).permute(2, 0, 1, 3, 4))

    def unqueries(self, x: torch.Tensor, b: int, h: int) -> torch.Tensor:
        """The inverse of :meth:`queries`: back to ``[B, H, Lq, F]``."""
        f = x.shape[-1]
        x = x.reshape(self.blocks, b, h, self.rows, f).permute(1, 2, 0, 3, 4)
        return x.reshape(b, h, self.blocks * self.rows, f)[:, :, :self.lq]

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, H, Lk, F]`` as each block's window of ``width`` keys (overlapping views of one
        padded copy)."""
        b, h, _, f = x.shape
        n = self._chunks * self.rows
        padded = x.new_zeros(b, h, n, f)
        lo, hi = max(0, self.first), min(self.lk, self.first + n)
        if lo < hi:
            padded[:, :, lo - self.first:hi - self.first] = x[:, :, lo:hi]
        s = padded.stride()
        windows = padded.as_strided((self.blocks, b, h, self.width, f), (self.rows * s[2], s[0], s[1], s[2], s[3]))
        return self._stack(windows)

    def add_keys(self, g: torch.Tensor, b: int, h: int) -> torch.Tensor:
        """Gradients of the stacked key windows summed back onto ``[B, H, Lk, F]``."""
        f, m = g.shape[-1], self.width // self.rows
        g = g.reshape(self.blocks, b, h, m, self.rows, f)
        chunks = g.new_zeros(b, h, self._chunks, self.rows, f)
        for c in range(m):  # window chunk c of block j is key chunk j + c
            chunks[:, :, c:c + self.blocks] += g[:, :, :, c].permute(1, 2, 0, 3, 4)
        flat = chunks.view(b, h, -1, f)
        out = g.new_zeros(b, h, self.lk, f)
        lo, hi = max(0, self.first), min(self.lk, self.first + flat.shape[2])
        if lo < hi:
            out[:, :, lo:hi] = flat[:, :, lo - self.first:hi - self.first]
        return out


def band_layout(plan: list[QueryBlock], lq: int, lk: int, batch: int, heads: int, dtype, device,
                max_waste: float) -> BandLayout | None:
    """The band for ``plan``, or ``None`` when it would not pay: a single query block, the
    padded band (blocks x common window) over ``max_waste`` times the keys the spans hold, or
    a mask over :data:`MASK_BYTES`."""
    if len(plan) < 2:
        return None
    rows = plan[0].q1 - plan[0].q0
    spans = {j: (qb.tiles[0].k0, qb.tiles[-1].k1) for j, qb in enumerate(plan) if qb.tiles}
    if not spans:
        return None
    first = min(k0 - j * rows for j, (k0, _) in spans.items())  # window j starts at j * rows + first
    width = max(k1 - j * rows for j, (_, k1) in spans.items()) - first
    width = -(-width // rows) * rows
    held = sum(k1 - k0 for k0, k1 in spans.values())
    if len(plan) * width > max_waste * held:
        return None
    shape = [1, 1]  # the mask's batch and head extent: 1 unless some tile depends on them
    for qb in plan:
        for t in qb.tiles:
            if t.allowed is not None:
                shape = [max(shape[0], t.allowed.shape[0]), max(shape[1], t.allowed.shape[1])]
    by_batch = shape[0] > 1 and shape[1] == 1
    per_head = shape[1] > 1
    extent = batch * heads if per_head else shape[0]
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(plan) * extent * rows * width * itemsize > MASK_BYTES:
        return None
    allowed = torch.zeros(len(plan), *shape, rows, width, dtype=torch.bool, device=device)
    for j, qb in enumerate(plan):
        n, at = qb.q1 - qb.q0, j * rows + first
        for t in qb.tiles:
            allowed[j, :, :, :n, t.k0 - at:t.k1 - at] = True if t.allowed is None else t.allowed
    if per_head:
        allowed = allowed.expand(-1, batch, heads, -1, -1)
    allowed = allowed.reshape(len(plan) * shape[0] if by_batch else len(plan), -1, rows, width)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
    dead = ~allowed.any(-1)
    return BandLayout(rows, width, first, len(plan), mask, dead if bool(dead.any()) else None, by_batch, lq, lk)


class BandFlash(torch.autograd.Function):
    """Attention over a :class:`BandLayout`: one fused call forward, one backward."""

    @staticmethod
    def forward(ctx, layout: BandLayout, scale, qf, kf, v):
        b, h = qf.shape[:2]
        o, lse = _flash(layout.queries(qf), layout.keys(kf), layout.keys(v), 0.0, False, attn_mask=layout.mask,
                        scale=scale)
        ctx.layout, ctx.scale = layout, scale
        ctx.save_for_backward(qf, kf, v, o, lse)  # the stacked q/k/v are rebuilt in backward: less memory held
        return layout.unqueries(o, b, h)

    @staticmethod
    def backward(ctx, gout):
        qf, kf, v, o, lse = ctx.saved_tensors
        layout = ctx.layout
        b, h = qf.shape[:2]
        if layout.dead is not None:  # rows that see nothing: P = exp(S - inf) = 0, whatever the kernel reported
            lse = lse.masked_fill(layout.dead, float("inf"))
        with threads_for_tiles():
            gq, gk, gv = _flash_bwd(layout.queries(gout.contiguous()), layout.queries(qf), layout.keys(kf),
                                    layout.keys(v), o, lse, 0.0, False, attn_mask=layout.mask, scale=ctx.scale)
        return None, None, layout.unqueries(gq, b, h), layout.add_keys(gk, b, h), layout.add_keys(gv, b, h)
