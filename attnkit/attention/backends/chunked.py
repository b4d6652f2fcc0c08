"""Memory-efficient attention for any score, mask and modifier.

Online softmax over key tiles (FlashAttention's recurrence) in a custom autograd function
that saves only the inputs, the output and the per-row log-sum-exp, and recomputes each
tile's scores in the backward pass. So additive/MLP scores never hold the
``Lq x Lk x hidden`` tensor nor the ``Lq x Lk`` matrix: peak memory is one tile,
``O((Lq + Lk) * d)`` overall. Tiles the mask removes are skipped.

The backward of one tile: ``P = exp(S - lse)``, ``dV += P^T dO``,
``dS = P * (dO V^T - rowsum(dO * O))`` (plus the weights' own gradient when they were
returned), then ``autograd.grad(S, (q_tile, k_tile, params), dS)`` differentiates whatever
the score and modifiers computed — so a user's score function needs no backward of its own.
"""
from __future__ import annotations

import torch

from .base import BACKENDS, Backend, Problem, tile_scores
from .threads import threads_for_tiles
from .tiles import plan_tiles

NEG_INF = float("-inf")


def tile_sizes(p: Problem, budget: int = 1 << 22) -> tuple[int, int]:
    """Square-ish power-of-two tiles whose score work (``B*H*bq*bk*tile_cost`` floats)
    stays near ``budget``.

    A tile costs a fixed ~20 small tensor ops of bookkeeping (online softmax, slicing) plus
    a few passes over its pair buffer, so small tiles are dominated by the former. Measured
    on the additive score (hidden 128, B=2, L=2048, fwd+bwd, medians of 5 interleaved
    rounds, 2-core AMD EPYC with avx512_bf16): 4M floats (128x128 tiles) 4.27 s fp32 /
    2.94 s bf16, 1M (64x64) 5.05 / 3.41 s, 256K (32x32) about 1.5x slower again. 4M floats
    is also the largest buffer :func:`~attnkit.attention.scores.scratch` keeps. (Those figures
    are the tensor-op pair loop's; the fused kernel's cost per pair is the score's ``tile_cost``.)"""
    b, h, lq, lk = p.shape
    grads = torch.is_grad_enabled() and any(x.requires_grad for x in (p.qf, p.kf, p.v, *p.params()))
    # a score's smaller per-pair cost (the fused kernel: no pair buffer) holds only where no
    # backward needs autograd through `block`, which materialises the pairs
    fused = not grads or _written_out_backward(p) is not None
    per_pair = b * h * max(1, p.score.tile_cost(p.qf, p.kf) if fused else p.score.block_cost)
    side = max(16, int((budget / per_pair) ** 0.5))
    side = 1 << (side.bit_length() - 1)
    return max(1, min(lq, side)), max(1, min(lk, side))


def _written_out_backward(p: Problem):
    """The score's own tile backward (``block_backward``) where it applies: the modifiers leave
    dS unchanged (bias terms without trainable parameters); else None (autograd through ``block``)."""
    if any(m.kind != "bias" or any(x.requires_grad for x in m.parameters()) for m in p.mods):
        return None
    return p.score.block_backward


def _forward(p: Problem, plan, qf, kf, v):
    """The online-softmax pass over the plan's tiles: ``(out, lse, weights or None)``."""
    b, h, lq, lk = p.shape
    out = v.new_zeros(b, h, lq, v.shape[-1])
    lse = qf.new_full((b, h, lq), NEG_INF)
    weights = qf.new_zeros(b, h, lq, lk) if p.need_weights else None
    for qb in plan:
        n = qb.q1 - qb.q0
        m = qf.new_full((b, h, n), NEG_INF)
        den = qf.new_zeros(b, h, n)
        acc = v.new_zeros(b, h, n, v.shape[-1])
        kept = []
        for t in qb.tiles:
            s = tile_scores(p, (qb.q0, qb.q1), (t.k0, t.k1), qf[:, :, qb.q0:qb.q1], kf[:, :, t.k0:t.k1])
            if t.allowed is not None:
                s = s.masked_fill(~t.allowed, NEG_INF)
            m_new = torch.maximum(m, s.amax(-1))
            m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
            pr = torch.exp(s - m_safe.unsqueeze(-1))
            decay = torch.exp(m - m_safe)
            den = den * decay + pr.sum(-1)
            acc = acc * decay.unsqueeze(-1) + pr.to(v.dtype) @ v[:, :, t.k0:t.k1]
            m = m_new
            if weights is not None:
                kept.append((t, pr, m_safe))
        alive = den > 0
        safe_den = torch.where(alive, den, torch.ones_like(den))
        out[:, :, qb.q0:qb.q1] = acc / safe_den.unsqueeze(-1)
        m_safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        lse[:, :, qb.q0:qb.q1] = torch.where(alive, m_safe + torch.log(safe_den), torch.full_like(m, NEG_INF))
        for t, pr, m_at in kept:  # rescale each tile's probabilities to the final max
            scale = torch.exp(m_at - m_safe) / safe_den
            weights[:, :, qb.q0:qb.q1, t.k0:t.k1] = pr * scale.unsqueeze(-1)
    return out, lse, weights


def _backward(p: Problem, plan, qf, kf, v, params, gout, lse, delta, gweights):
    """Gradients of every input from the tiles again: ``(dq, dk, dv, dparams)``."""
    # low-precision gradients are summed over tiles in float32 and rounded once at the end
    dq, dk, dv = (torch.zeros_like(x, dtype=_acc_dtype(x)) for x in (qf, kf, v))
    dparams = [torch.zeros_like(x, dtype=_acc_dtype(x)) for x in params]
    analytic = _written_out_backward(p)
    if torch.is_grad_enabled():  # create_graph: the written-out backward is not differentiable
        analytic = None
    track = analytic is None  # autograd differentiates each tile's scores
    for qb in plan:
        rows = slice(qb.q0, qb.q1)
        go, lse_b, delta_b = gout[:, :, rows], lse[:, :, rows].unsqueeze(-1), delta[:, :, rows].unsqueeze(-1)
        for t in qb.tiles:
            cols = slice(t.k0, t.k1)
            with torch.set_grad_enabled(track):
                q_t = qf[:, :, rows].detach().requires_grad_(track and qf.requires_grad)
                k_t = kf[:, :, cols].detach().requires_grad_(track and kf.requires_grad)
                span = (qb.q0, qb.q1), (t.k0, t.k1)
                if track:  # autograd differentiates the score's own `block` (a subclass may override it alone)
                    s, state = tile_scores(p, *span, q_t, k_t), None
                else:  # the score keeps what its own tile backward needs
                    s, state = tile_scores(p, *span, q_t, k_t, keep=True)
            sd = s.detach()
            if t.allowed is not None:
                sd = sd.masked_fill(~t.allowed, NEG_INF)
            pr = torch.exp(sd - lse_b)
            dv[:, :, cols] += pr.transpose(-1, -2).to(v.dtype) @ go
            dp = go @ v[:, :, cols].transpose(-1, -2)
            if gweights is not None:
                dp = dp + gweights[:, :, rows, cols]
            ds = pr * (dp - delta_b)
            if analytic is not None:
                extra = () if state is None else (state,)  # a score without state keeps the 3-argument form
                gq, gk, gp = analytic(qf[:, :, rows], kf[:, :, cols], ds, *extra)
                dq[:, :, rows] += gq
                dk[:, :, cols] += gk
                for i, x in enumerate(params):
                    if x in gp:
                        dparams[i] += gp[x]
                continue
            wrt = [x for x in (q_t, k_t) if x.requires_grad] + params
            if not wrt:
                continue
            grads = torch.autograd.grad(s, wrt, ds, allow_unused=True)
            it = iter(grads)
            if q_t.requires_grad:
                dq[:, :, rows] += next(it)
            if k_t.requires_grad:
                dk[:, :, cols] += next(it)
            for i, g in enumerate(it):
                if g is not None:
                    dparams[i] += g
    dq, dk, dv = (g.to(x.dtype) for g, x in zip((dq, dk, dv), (qf, kf, v)))
    return dq, dk, dv, [g.to(x.dtype) for g, x in zip(dparams, params)]


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16 tensors, else their own dtype."""
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: Problem, plan, qf, kf, v, *params):
        # many short parallel regions: leave cores other processes hold to them (CPU only)
        with threads_for_tiles(p.device.type == "cpu"):
            out, lse, weights = _forward(p, plan, qf, kf, v)
        ctx.p, ctx.plan, ctx.n_params = p, plan, len(params)
        ctx.save_for_backward(qf, kf, v, out, lse, *params, *([weights] if weights is not None else []))
        ctx.mark_non_differentiable(lse)
        return (out, lse, weights) if weights is not None else (out, lse)

    @staticmethod
    def backward(ctx, gout, glse, gweights=None):
        p, plan = ctx.p, ctx.plan
        saved = ctx.saved_tensors
        qf, kf, v, out, lse = saved[:5]
        params = list(saved[5:5 + ctx.n_params])
        weights = saved[5 + ctx.n_params] if len(saved) > 5 + ctx.n_params else None
        lse = torch.where(torch.isinf(lse), torch.full_like(lse, float("inf")), lse)
        delta = (gout * out).sum(-1)  # rowsum(dO * O)
        if gweights is not None and weights is not None:
            delta = delta + (gweights * weights).sum(-1)
        with threads_for_tiles(p.device.type == "cpu"):
            dq, dk, dv, dparams = _backward(p, plan, qf, kf, v, params, gout, lse, delta, gweights)
        return (None, None, dq, dk, dv, *dparams)


class ChunkedBackend(Backend):
    """Any score, any mask, any modifier; O(n) memory; skips masked tiles; weights from the
    log-sum-exp it keeps."""

    name = "chunked"
    budget = 1 << 22

    def why_not(self, p: Problem) -> str | None:
        return None

    def run(self, p: Problem):
        b, h, lq, lk = p.shape
        bq, bk = tile_sizes(p, self.budget)
        plan = plan_tiles(p.mask, b, h, lq, lk, bq, bk, p.device)
        res = _ChunkedAttention.apply(p, plan, p.qf, p.kf, p.v, *p.params())
        return res[0], (res[2] if p.need_weights else None)


BACKENDS.register("chunked")(ChunkedBackend())
