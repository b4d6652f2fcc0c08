"""Tiling plans shared by the block-sparse and chunked backends.

A plan lists, for every query block, the key blocks the mask leaves anything in; each is
``full`` (nothing masked: no mask tensor needed) or partial (carries its boolean tile).
Empty key blocks are never computed: this is where causal and sliding-window attention
beat dense kernels that compute every score and mask afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..masks import MaskMod, evaluate_mask


@dataclass
class KeyTile:
    """Keys ``[k0, k1)`` for one query block. ``allowed`` is ``None`` when the whole tile is
    visible; ``causal`` marks a square diagonal tile that is exactly lower-triangular."""

    k0: int
    k1: int
    allowed: torch.Tensor | None = None
    causal: bool = False


@dataclass
class QueryBlock:
    """Queries ``[q0, q1)`` and the key tiles they can see."""

    q0: int
    q1: int
    tiles: list[KeyTile]


def plan_tiles(mask: MaskMod | None, batch: int, heads: int, lq: int, lk: int, bq: int, bk: int,
               device, merge: bool = False) -> list[QueryBlock]:
    """Split ``[0, lq) x [0, lk)`` into query blocks of ``bq`` and key tiles of ``bk``
    (aligned to multiples of ``bk``), dropping empty tiles. With ``merge``, neighbouring
    tiles of the same kind are joined so that fused kernels get fewer, larger calls."""
    plan = []
    for q0 in range(0, lq, bq):
        q1 = min(lq, q0 + bq)
        if mask is None:
            tiles = [KeyTile(k0, min(lk, k0 + bk)) for k0 in range(0, lk, bk)]
            plan.append(QueryBlock(q0, q1, _merge(tiles) if merge else tiles))
            continue
        lo, hi = mask.kv_bounds(q0, q1, lk)
        lo, hi = max(0, lo), min(lk, hi)
        if lo >= hi:
            plan.append(QueryBlock(q0, q1, []))
            continue
        lo = (lo // bk) * bk
        allowed = evaluate_mask(mask, batch, heads, (q0, q1), (lo, hi), device)
        tiles = []
        for k0 in range(lo, hi, bk):
            k1 = min(hi, k0 + bk)
            tile = allowed[..., k0 - lo:k1 - lo]
            if not bool(tile.any()):
                continue
            if bool(tile.all()):
                tiles.append(KeyTile(k0, k1))
            else:
                tiles.append(KeyTile(k0, k1, tile, causal=_is_causal_tile(tile, q0, q1, k0, k1)))
        plan.append(QueryBlock(q0, q1, _merge(tiles) if merge else tiles))
    return plan


def _is_causal_tile(tile: torch.Tensor, q0: int, q1: int, k0: int, k1: int) -> bool:
    if q0 != k0 or q1 != k1 or tile.shape[0] != 1 or tile.shape[1] != 1:
        return False
    n = q1 - q0
    return bool(torch.equal(tile[0, 0], torch.ones(n, n, dtype=torch.bool, device=tile.device).tril()))


def _merge(tiles: list[KeyTile]) -> list[KeyTile]:
    """Join adjacent full tiles, and adjacent partial (non-causal) tiles."""
    out: list[KeyTile] = []
    for t in tiles:
        prev = out[-1] if out else None
        if prev is not None and prev.k1 == t.k0 and not prev.causal and not t.causal:
            if prev.allowed is None and t.allowed is None:
                prev.k1 = t.k1
                continue
            if prev.allowed is not None and t.allowed is not None:
                shape = torch.broadcast_shapes(prev.allowed.shape[:-1], t.allowed.shape[:-1])
                prev.allowed = torch.cat([prev.allowed.expand(*shape, -1), t.allowed.expand(*shape, -1)], -1)
                prev.k1 = t.k1
                continue
        out.append(KeyTile(t.k0, t.k1, t.allowed, t.causal))
    return out
