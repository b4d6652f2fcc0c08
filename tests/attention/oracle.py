"""The independent oracle: attention written here from the formulas alone, in float64.

Nothing here imports attnkit's attention code paths (``build_problem``, ``tile_scores``,
``evaluate_mask``, ``apply_mods``, ``Score.block``, ``ScoreMod.forward``...): scores are
recomputed from the modules' raw parameters, masks are truth tables built with Python
loops from each mask's definition, modifiers from their papers' formulas, grouped-query
heads by explicit index arithmetic. A bug shared by every backend (a wrong mask, a
modifier's index offset, the temperature fold, the head expansion) therefore shows up as a
difference here instead of moving both sides of the comparison together.

Only user-supplied functions (a user's score or ``score_mod``) are called as given: they
are the user's formula.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# ---------------------------------------------------------------------------- scores


def oracle_scores(score, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[B, H, Lq, Lk]`` scores of ``q [B,H,Lq,D]`` and ``k [B,H,Lk,D]`` (float64), by the
    score module's class name and raw parameters."""
    kind = type(score).__name__
    if kind == "DotScore":
        return torch.einsum("bhid,bhjd->bhij", q, k)
    if kind == "ScaledDotScore":
        # the default scale is 1/sqrt(d); a score built with scale= carries it in dot_scale
        return torch.einsum("bhid,bhjd->bhij", q, k) * float(score.dot_scale)
    if kind == "BilinearScore":
        w = score.weight.weight.double()  # Linear(q_dim -> k_dim): [k_dim, q_dim]
        return torch.einsum("bhid,ed,bhje->bhij", q, w, k)
    if kind == "CosineScore":
        qn = q / q.pow(2).sum(-1, keepdim=True).sqrt()
        kn = k / k.pow(2).sum(-1, keepdim=True).sqrt()
        return torch.exp(score.log_scale.double()) * torch.einsum("bhid,bhjd->bhij", qn, kn)
    if kind in ("AdditiveScore", "MLPScore"):
        act = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "silu": lambda x: x * torch.sigmoid(x),
               "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))}[score.activation]
        wq, wk, v = score.w_q.weight.double(), score.w_k.weight.double(), score.v.weight.double()[0]
        a = torch.einsum("bhid,ed->bhie", q, wq)
        if score.w_q.bias is not None:
            a = a + score.w_q.bias.double()
        c = torch.einsum("bhjd,ed->bhje", k, wk)
        return torch.einsum("bhije,e->bhij", act(a.unsqueeze(3) + c.unsqueeze(2)), v)
    if kind == "CallableScore":
        return score.fn(q, k)
    raise KeyError(f"oracle has no formula for score {kind}")


# ----------------------------------------------------------------------------- masks


def truth_table(rule: Callable[[int, int, int], bool], b: int, lq: int, lk: int) -> torch.Tensor:
    """``allowed[b, 0, i, j] = rule(b, i, j)`` evaluated one pair at a time."""
    t = torch.zeros(b, 1, lq, lk, dtype=torch.bool)
    for bi in range(b):
        for i in range(lq):
            for j in range(lk):
                t[bi, 0, i, j] = bool(rule(bi, i, j))
    return t


# ------------------------------------------------------------------------- modifiers


def alibi_slope(h: int, heads: int) -> float:
    """Press et al. (2022): the geometric sequence starting at 2^(-8/H) with that ratio."""
    return 2.0 ** (-8.0 * (h + 1) / heads)


def t5_bucket(rel: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """Raffel et al. (2020) relative-position bucket of ``rel = key - query``: half the
    buckets per direction when bidirectional; exact below ``n/2``, then log-spaced up to
    ``max_distance``, the rest in the last bucket."""
    n, out = num_buckets, 0
    if bidirectional:
        n //= 2
        out = n if rel > 0 else 0
        dist = abs(rel)
    else:
        dist = max(-rel, 0)
    exact = n // 2
    if dist < exact:
        return out + dist
    big = exact + int(math.log(dist / exact) / math.log(max_distance / exact) * (n - exact))
    return out + min(big, n - 1)


def oracle_mod(mod, s: torch.Tensor) -> torch.Tensor:
    """One score modifier applied to full scores ``s [B,H,Lq,Lk]`` (float64)."""
    kind = type(mod).__name__
    b, h, lq, lk = s.shape
    i = torch.arange(lq, dtype=torch.float64).view(-1, 1)
    j = torch.arange(lk, dtype=torch.float64).view(1, -1)
    if kind == "ALiBi":
        slopes = torch.tensor([alibi_slope(x, h) for x in range(h)], dtype=torch.float64).view(1, h, 1, 1)
        return s - slopes * (i - j).abs()
    if kind == "RelativePositionBias":
        idx = torch.tensor([[t5_bucket(jj - ii, mod.bidirectional, mod.num_buckets, mod.max_distance)
                             for jj in range(lk)] for ii in range(lq)])
        table = mod.table.double()  # [buckets, heads]
        return s + table[idx].permute(2, 0, 1).unsqueeze(0)  # [1, H, Lq, Lk]
    if kind == "SoftCap":
        return mod.cap * torch.tanh(s / mod.cap)
    if kind == "Temperature":
        return s / torch.exp(mod.log_t.double())
    if kind == "CallableMod":
        grid = (torch.arange(b).view(-1, 1, 1, 1), torch.arange(h).view(1, -1, 1, 1),
                torch.arange(lq).view(1, 1, -1, 1), torch.arange(lk).view(1, 1, 1, -1))
        return mod.fn(s, *grid)
    raise KeyError(f"oracle has no formula for modifier {kind}")


# ------------------------------------------------------------------------- attention


@dataclass
class OracleResult:
    out: torch.Tensor
    weights: torch.Tensor


def oracle_attention(q, k, v, score, allowed: torch.Tensor | None = None, mods=()) -> OracleResult:
    """Attention from the formula: ``softmax_j(mods(score(q_i, k_j)) | allowed) @ v``.

    ``q [B,H,Lq,D]``; ``k``, ``v`` ``[B,Hk,Lk,·]`` with ``H`` a multiple of ``Hk`` (query
    head ``h`` reads key/value head ``h // (H / Hk)``); ``allowed`` a bool tensor
    broadcastable to ``[B,H,Lq,Lk]``. Rows with no allowed key give zero output and weights.
    Everything in float64, differentiable in ``q``, ``k``, ``v`` and the modules' parameters.
    """
    heads, kv_heads = q.shape[1], k.shape[1]
    group = heads // kv_heads
    head_of = torch.tensor([h // group for h in range(heads)])
    k, v = k[:, head_of], v[:, head_of]
    s = oracle_scores(score, q, k)
    for m in mods:
        s = oracle_mod(m, s)
    if allowed is None:
        allowed = torch.ones(s.shape, dtype=torch.bool)
    allowed = allowed.expand(s.shape)
    e = torch.where(allowed, s, torch.full_like(s, -math.inf))
    top = e.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    num = torch.where(allowed, torch.exp(e - top), torch.zeros_like(s))
    den = num.sum(-1, keepdim=True)
    w = num / torch.where(den > 0, den, torch.ones_like(den))
    return OracleResult(w @ v, w)
