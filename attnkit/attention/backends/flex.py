"""FlexAttention (``torch.nn.attention.flex_attention``), compiled: dot-product scores with
any ``mask_mod`` and ``score_mod`` — the same signatures attnkit uses, so masks and
modifiers pass through unchanged.

Where it runs: on CUDA it is the default for masked or modified dot-product attention
(block-sparse, with backward). On CPU, in torch 2.13 it runs only compiled and only
forward, and was slower than SDPA / the block-sparse backend in every case measured
(``benchmarks/results/attention.json``), so the dispatcher picks it on CPU only when forced.
"""
from __future__ import annotations

import functools

import torch

from .base import BACKENDS, Backend, Problem, apply_mods
from .weights import attention_with_weights


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_available() -> str | None:
    """``None`` if FlexAttention can be imported, else why not."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except (ImportError, RuntimeError) as e:  # pragma: no cover - depends on the torch build
        return f"FlexAttention unavailable: {e}"
    return None


class FlexBackend(Backend):
    """Compiled FlexAttention with attnkit's mask and modifiers."""

    name = "flex"

    def why_not(self, p: Problem) -> str | None:
        if (reason := flex_available()) is not None:
            return reason
        if not p.score.is_dot:
            return f"score {type(p.score).__name__} is not a dot product"
        if p.device.type == "cpu" and p.needs_grad:
            return "FlexAttention has no backward on CPU in this torch"
        return None

    def run(self, p: Problem):
        from torch.nn.attention.flex_attention import create_block_mask

        b, h, lq, lk = p.shape
        if p.need_weights:
            return attention_with_weights(p)
        block_mask = None
        if p.mask is not None:
            block_mask = create_block_mask(p.mask, b, h, lq, lk, device=p.device)
        score_mod = None
        if p.mods:
            mods = p.mods

            def score_mod(score, bi, hi, qi, ki):
                return apply_mods(score, mods, (bi, hi, qi, ki))

        out = _compiled_flex()(p.qf, p.kf, p.v, score_mod=score_mod, block_mask=block_mask, scale=p.score.dot_scale)
        return out, None


BACKENDS.register("flex")(FlexBackend())
