"""Programmable attention: scores, masks, score modifiers, backends and modules.

>>> from attnkit.attention import MultiHeadAttention, causal, window
>>> mha = MultiHeadAttention(64, heads=4, score="scaled_dot", mask=[causal() & window(16)], mods=["alibi"])
"""
from .backends import BACKENDS
from .dispatch import Dispatch, choose_backend
from .functional import attend
from .layers import Attention, AttentionPooling, MultiHeadAttention, explain_dispatch
from .masks import (
    MaskMod,
    as_mask,
    causal,
    key_padding,
    list_masks,
    prefix_lm,
    segment,
    window,
)
from .mods import (
    ALiBi,
    CallableMod,
    RelativePositionBias,
    ScoreMod,
    SoftCap,
    Temperature,
    list_mods,
)
from .scores import Score, build_score, list_scores
from .spec import AttentionSpec


def list_backends() -> list[str]:
    """Names of the registered backends."""
    return BACKENDS.names()


__all__ = [
    "ALiBi", "Attention", "AttentionPooling", "AttentionSpec", "CallableMod", "Dispatch", "MaskMod",
    "MultiHeadAttention", "RelativePositionBias", "Score", "ScoreMod", "SoftCap", "Temperature", "as_mask",
    "attend", "build_score", "causal", "choose_backend", "explain_dispatch", "key_padding", "list_backends",
    "list_masks", "list_mods", "list_scores", "prefix_lm", "segment", "window",
]
