"""Attention maps of any model: what its attnkit attention layers and its pretrained
backbone attended to, and attention rollout across layers.

:func:`record_attention` hooks every attnkit attention module of a model (``Attention``,
``MultiHeadAttention``, ``AttentionPooling``), asks it for its weights and keeps them, so no
model has to plumb ``need_weights`` through its blocks. :func:`rollout` is Abnar & Zuidema
(2020): ``R = A'_L ... A'_1`` with ``A' = (mean over heads of A + I) / 2`` renormalised, i.e.
how much each input position flows into each output position through the residual stream."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..attention.layers import AttentionPooling, MultiHeadAttention, _AttentionBase


@dataclass
class AttentionRecord:
    """One attention call: module name, ``kind`` (``pooling``, ``self`` or ``cross``) and the
    weights (``[B, heads, Lq, Lk]``; ``[B, heads, L]`` for pooling)."""

    name: str
    kind: str
    weights: torch.Tensor


def _kind(module: nn.Module, args: tuple, kwargs: dict) -> str:
    if isinstance(module, AttentionPooling):
        return "pooling"
    if isinstance(module, MultiHeadAttention):
        context = args[1] if len(args) > 1 else kwargs.get("context")
        return "self" if context is None else "cross"
    key = args[1] if len(args) > 1 else kwargs.get("key")
    return "self" if key is None else "cross"


@contextmanager
def record_attention(model: nn.Module):
    """Within the block every attnkit attention module of ``model`` returns its weights and
    appends an :class:`AttentionRecord` (in call order) to the yielded list."""
    records: list[AttentionRecord] = []
    handles = []

    def ask(mod, args, kwargs):
        return args, {**kwargs, "need_weights": True}
    for name, module in model.named_modules():
        if not isinstance(module, _AttentionBase):
            continue

        def keep(mod, args, kwargs, output, name=name):
            weights = output[1]
            if weights is not None:
                records.append(AttentionRecord(name, _kind(mod, args, kwargs), weights.detach()))
        handles.append(module.register_forward_pre_hook(ask, with_kwargs=True))
        handles.append(module.register_forward_hook(keep, with_kwargs=True))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def rollout(layers: list[torch.Tensor] | torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout of self-attention weights ``layers`` (each ``[B, heads, T, T]``, first
    layer first) -> ``[B, T, T]``: row ``i`` is how much each input position contributes to
    position ``i`` after the last layer. ``residual`` is the weight of the identity (the
    skip connection)."""
    if isinstance(layers, torch.Tensor):
        layers = list(layers.unbind(0)) if layers.dim() == 5 else [layers]
    if not layers:
        raise ValueError("rollout: no attention layers")
    eye = torch.eye(layers[0].shape[-1], dtype=layers[0].dtype, device=layers[0].device)
    out = None
    for a in layers:
        a = residual * eye + (1 - residual) * a.mean(1)
        a = a / a.sum(-1, keepdim=True).clamp(min=1e-12)
        out = a if out is None else a @ out
    return out


def token_relevance(pooling: torch.Tensor | None, layers: list[torch.Tensor], first_position: bool,
                    rolled: torch.Tensor | None = None) -> torch.Tensor:
    """One attention score per input position ``[B, T]``: the pooling weights (mean over
    heads) carried back through the rollout of the self-attention layers under them; with no
    pooling attention, the rollout row of the first position (``[CLS]``) when the model reads
    that position (``first_position``). ``rolled``: ``rollout(layers)`` when already computed."""
    pooled = pooling.mean(1) if pooling is not None else None
    if not layers:
        if pooled is None:
            raise ValueError("no attention weights")
        return pooled
    r = rollout(layers) if rolled is None else rolled
    if pooled is not None:
        return (pooled.unsqueeze(1) @ r).squeeze(1)
    if not first_position:
        raise ValueError("no pooling attention and the model does not read one position")
    return r[:, 0]
