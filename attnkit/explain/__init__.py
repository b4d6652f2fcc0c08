"""Understanding a model: attention maps (attnkit layers and pretrained backbones, with
rollout), gradient x input and integrated gradients through Captum, rendered as coloured
tokens, HTML and images.

>>> from attnkit.explain import explain
>>> [e] = explain("runs/sst2", ["a gripping, funny film"], method="ig")
>>> list(zip(e.tokens, e.scores.round(3)))
"""
from ..tasks import Encoded
from .attention_maps import AttentionRecord, record_attention, rollout, token_relevance
from .attribution import ATTRIBUTIONS, integrated_gradients, saliency
from .explanations import (
           METHODS,
           ExplainError,
           Explanation,
           alignments,
           attention_maps,
           encode_inputs,
           explain,
           explain_encoded,
)

__all__ = ["ATTRIBUTIONS", "METHODS", "AttentionRecord", "Encoded", "ExplainError", "Explanation", "alignments", "attention_maps",
           "encode_inputs", "explain", "explain_encoded", "integrated_gradients", "record_attention", "rollout",
           "saliency", "token_relevance"]
