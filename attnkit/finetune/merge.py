"""Merging LoRA weights into the backbone for deployment: ``W + (alpha / r) B A`` folded into
each adapted Linear by PEFT's ``merge_and_unload``; the result is a plain transformers model
(no PEFT at inference) that computes the same function."""
from __future__ import annotations

from torch import nn

from ..train.bf16_weights import forget_bf16_copies
from .encoder import BackboneEncoder


def merge_lora(model: nn.Module) -> bool:
    """Fold the LoRA (or IA3) weights of ``model``'s backbone into its linear layers, in place.
    Returns whether anything was merged; a merged model (or one without PEFT layers) is left
    unchanged, so merging twice is merging once."""
    encoders = [m for m in model.modules() if isinstance(m, BackboneEncoder)]
    merged = False
    for enc in encoders:
        if hasattr(enc.model, "merge_and_unload") and not enc.prompt_learning:
            enc.model = enc.model.merge_and_unload()
            merged = True
    if merged:  # PEFT adds the update through .data: bf16 copies made before would not see it
        forget_bf16_copies(model)
    return merged
