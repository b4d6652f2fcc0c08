"""The ``model:`` section of a run config."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..finetune.methods import FinetuneConfig


@dataclass
class ModelConfig:
    """The ``model:`` section. Each block is ``{type: name, option: value, ...}``; the options
    are the block's constructor arguments (see ``attnkit.nn``)."""

    embedding: dict = field(default_factory=lambda: {"dim": 128})  # vectors: FILE loads word vectors (text format)
    chars: dict | None = None  # char-CNN word features for taggers: {char_dim: 30, channels: 50}
    encoder: dict = field(default_factory=dict)  # type defaults per task: lstm (text), image_cnn (images)
    decoder: dict = field(default_factory=dict)  # translation: transformer (default after a transformer encoder), gru, lstm
    search: dict = field(default_factory=dict)  # translation: beam, alpha, max_len_a, max_len_b, nbest, no_repeat_ngram
    pooler: dict = field(default_factory=dict)  # type defaults to attention
    head: dict = field(default_factory=dict)
    pretrained: str | None = None  # a backbone: minilm, a local Hugging Face model folder or a hub id
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # with pretrained: how to train it
    init_from: str | None = None  # a masked_lm run: its embedding and encoder (and tokenizer) start this model
