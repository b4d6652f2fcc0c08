"""Dropout whose random draw costs a quarter of PyTorch's on the CPU.

``torch.nn.functional.dropout`` on the CPU draws one random number per element through
``bernoulli_`` (mt19937, one thread): measured on a 2-core Xeon, 648 us for a 32 x 10 x 384
activation, 16% of a MiniLM LoRA training step in bf16 (20 dropouts a step). Here every
63-bit draw (``random_`` on int64, serial too) is cut into four 15-bit numbers, one per
element, and an element is kept when its number is at least ``round(p * 2**15)``: four
elements per draw instead of one. The probability is therefore ``p`` rounded to a multiple
of 2**-15 (0.1 -> 0.100006); the kept elements are scaled by ``1 / (1 - that)``, so the
expectation is the input's (exactly in float32/64; in bf16 the scale rounds, as
``nn.Dropout``'s does). It reads the global generator, so ``torch.manual_seed`` makes it
reproducible, like ``F.dropout`` (whose stream it does not reproduce).

On other devices (CUDA's dropout is a fused, fast kernel), for integer tensors and for a
``p`` that 15 bits round to 0 or 1 it is ``F.dropout`` itself."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = 1 << 15  # 15 random bits per element


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """``(keep, scale)``: a uint8 tensor of ``shape`` with each element 0 with probability
    ``p`` (rounded to a multiple of 2**-15), else 1, and ``1 / P(keep)``. (uint8, not bool:
    multiplying by a bool tensor, or ``torch.where`` on one, measured 3-10x slower.)"""
    n = math.prod(shape)
    threshold = round(p * LEVELS)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device="cpu").random_()  # 63 uniform bits each
    parts = draws.view(torch.int16)[:n].view(shape)  # four 16-bit parts, the top one 15 bits
    keep = torch.ge(parts.bitwise_and_(LEVELS - 1), threshold).view(torch.uint8)
    return keep, LEVELS / (LEVELS - threshold)


class _Dropout(torch.autograd.Function):
    """``x * mask`` with ``mask = keep * scale`` in ``x``'s dtype, kept for the backward: one
    multiplication each way (a uint8 mask, 4x smaller, cost an extra conversion per pass)."""

    @staticmethod
    def forward(ctx, x, p):
        keep, scale = keep_mask(x.shape, p)
        mask = keep.to(x.dtype).mul_(scale)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x`` with probability ``p`` when ``training`` (see the module's docstring)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or round(p * LEVELS) in (0, LEVELS):
        return F.dropout(x, p, training)  # also p under 2**-16 or from 1 - 2**-16 up, which 15 bits cannot tell
    return _Dropout.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`dropout` (same arguments, same state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return F.dropout(x, self.p, self.training, inplace=True)
        return dropout(x, self.p, self.training)
