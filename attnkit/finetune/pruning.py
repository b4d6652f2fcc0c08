"""Structured pruning of a BERT-structured backbone: whole attention heads and feed-forward
neurons removed physically (smaller matrices, so the model gets faster; masking them would
not), ranked by importance.

Importance is Michel et al. (2019, "Are Sixteen Heads Really Better than One?"): a gate
``xi`` multiplies each head's output (and each feed-forward neuron's activation); the
importance of a unit is the mean ``|dLoss/dxi|`` over a sample of labelled batches (one
example each, as the paper: per-example gradients, which a batch's mean would let cancel), taken at
``xi = 1`` (a first-order estimate of the loss change when the unit is removed), normalised
per layer. The gates are forward pre-hooks on the layers' output projections, so the
fine-tuning fast path and the Hugging Face path are measured alike.

A pruned backbone is recorded as ``{"heads": {layer: [kept head ids]}, "ffn": {layer: kept
count}}``; :func:`apply_pruned_shapes` gives a fresh backbone those shapes before a run's
weights are loaded into it. Every layer keeps at least one head and one neuron."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .encoder import BackboneEncoder, is_bert_like


def _encoder(model: nn.Module) -> BackboneEncoder:
    found = [m for m in model.modules() if isinstance(m, BackboneEncoder)]
    if not found:
        raise ValueError("the model has no pretrained backbone: structured pruning applies to fine-tuned "
                         "Transformer runs")
    enc = found[0]
    if hasattr(enc.model, "peft_config"):
        raise ValueError("the backbone still has PEFT layers: merge the run first (attnkit merge)")
    if not is_bert_like(enc.model):
        raise ValueError("the backbone is not BERT-structured (embeddings + encoder.layer[i].attention.self)")
    return enc


def _head_dim(sa: nn.Module) -> int:
    return sa.attention_head_size if hasattr(sa, "attention_head_size") else sa.query.out_features // sa.num_attention_heads


def importance(model: nn.Module, batches: Iterable[dict], loss: Callable[[dict, dict], torch.Tensor],
               progress: bool = False) -> dict:
    """``{"heads": [L, H], "ffn": [L, I]}``: mean |gradient| of each unit's gate over
    ``batches``, each layer's row divided by its L2 norm (``progress``: a bar over them)."""
    layers = _encoder(model).layers
    n_heads = [layer.attention.self.num_attention_heads for layer in layers]
    widths = [layer.output.dense.in_features for layer in layers]
    head_gates = [torch.ones(h, requires_grad=True) for h in n_heads]
    ffn_gates = [torch.ones(w, requires_grad=True) for w in widths]
    hooks = []
    for layer, hg, fg in zip(layers, head_gates, ffn_gates):
        d = _head_dim(layer.attention.self)

        def gate_heads(mod, args, hg=hg, d=d):
            x = args[0]
            return (x.unflatten(-1, (hg.numel(), d)) * hg[:, None]).flatten(-2),

        def gate_ffn(mod, args, fg=fg):
            return args[0] * fg,

        hooks.append(layer.attention.output.dense.register_forward_pre_hook(gate_heads))
        hooks.append(layer.output.dense.register_forward_pre_hook(gate_ffn))
    head_sum = [torch.zeros(h) for h in n_heads]
    ffn_sum = [torch.zeros(w) for w in widths]
    was_training = model.training
    model.eval()  # no dropout: the estimate is of the deployed model
    seen = 0
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="importance", leave=False, dynamic_ncols=True)
    try:
        for batch in batches:
            for g in head_gates + ffn_gates:
                g.grad = None
            out = model(batch)
            loss(out, batch).backward()
            for s, g in zip(head_sum + ffn_sum, head_gates + ffn_gates):
                s += g.grad.abs()
            seen += 1
    finally:
        if progress:
            batches.close()
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if not seen:
        raise ValueError("no batches to measure importance on")
    norm = [s / s.norm().clamp_min(1e-12) for s in head_sum]
    fnorm = [s / s.norm().clamp_min(1e-12) for s in ffn_sum]
    return {"heads": norm, "ffn": fnorm}


def plan(scores: dict, heads_fraction: float, ffn_fraction: float) -> dict:
    """Which units to keep: the ``heads_fraction`` (and ``ffn_fraction``) least important heads
    (neurons) of the whole model removed, each layer keeping at least one."""
    def keep(rows: list[torch.Tensor], fraction: float) -> list[list[int]]:
        flat = sorted((float(v), li, i) for li, row in enumerate(rows) for i, v in enumerate(row))
        drop_n = int(round(fraction * len(flat)))
        kept = [set(range(len(row))) for row in rows]
        for _, li, i in flat:
            if drop_n == 0:
                break
            if len(kept[li]) > 1:
                kept[li].discard(i)
                drop_n -= 1
        return [sorted(k) for k in kept]

    return {"heads": {str(i): k for i, k in enumerate(keep(scores["heads"], heads_fraction))},
            "ffn_keep": {str(i): k for i, k in enumerate(keep(scores["ffn"], ffn_fraction))}}


def _sliced(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    w = linear.weight.detach()
    b = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if b is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def prune(model: nn.Module, kept: dict) -> dict:
    """Remove, in place, every head and feed-forward neuron not in ``kept`` (from :func:`plan`);
    returns the record :func:`apply_pruned_shapes` rebuilds the shapes from."""
    layers = _encoder(model).layers
    record = {"heads": {}, "ffn": {}}
    for li, layer in enumerate(layers):
        sa = layer.attention.self
        d = _head_dim(sa)
        heads = [int(h) for h in kept["heads"].get(str(li), range(sa.num_attention_heads))]
        if not heads:
            raise ValueError(f"layer {li}: at least one head must stay")
        if len(heads) < sa.num_attention_heads:
            idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads])
            sa.query, sa.key, sa.value = (_sliced(sa.query, rows=idx), _sliced(sa.key, rows=idx),
                                          _sliced(sa.value, rows=idx))
            layer.attention.output.dense = _sliced(layer.attention.output.dense, cols=idx)
            sa.num_attention_heads, sa.attention_head_size, sa.all_head_size = len(heads), d, len(heads) * d
        record["heads"][str(li)] = heads
        neurons = kept.get("ffn_keep", {}).get(str(li))
        if neurons is not None and len(neurons) < layer.output.dense.in_features:
            if not neurons:
                raise ValueError(f"layer {li}: at least one feed-forward neuron must stay")
            idx = torch.as_tensor([int(n) for n in neurons])
            layer.intermediate.dense = _sliced(layer.intermediate.dense, rows=idx)
            layer.output.dense = _sliced(layer.output.dense, cols=idx)
        record["ffn"][str(li)] = layer.output.dense.in_features
    return record


def apply_pruned_shapes(model: nn.Module, record: dict) -> None:
    """Give a freshly built backbone the shapes of a pruned one (the values are then loaded
    from the run's weights): the first N heads and neurons of each layer stand in for the kept ones."""
    layers = _encoder(model).layers
    kept = {"heads": {li: list(range(len(h))) for li, h in record.get("heads", {}).items()},
            "ffn_keep": {li: list(range(n)) for li, n in record.get("ffn", {}).items()}}
    for part in ("heads", "ffn_keep"):
        for li in kept[part]:
            if not str(li).isdigit() or int(li) >= len(layers):
                raise ValueError(f"the pruning record names layer {li!r}; the backbone has layers 0-{len(layers) - 1}")
    prune(model, kept)


def count_units(model: nn.Module) -> dict:
    """Heads and feed-forward neurons the backbone has now."""
    layers = _encoder(model).layers
    return {"heads": sum(layer.attention.self.num_attention_heads for layer in layers),
            "ffn": sum(layer.output.dense.in_features for layer in layers)}
