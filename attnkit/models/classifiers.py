"""Models from blocks: embedding -> encoder -> pooler -> head, built from registries.

Every model takes a batch dict (from ``attnkit.data`` collate functions) and returns a dict
with ``logits`` (and ``attention`` weights when asked); ``loss(out, batch)`` and
``predict(out, batch)`` come from the head, so the trainer never branches on the task."""
from __future__ import annotations

import torch
from torch import nn

from ..nn import EMBEDDINGS, ENCODERS, HEADS, POOLERS, CharCNN
from ..nn.masking import full_lengths, padding_mask
from .builder import build_block
from .model_config import ModelConfig


def _embedding_options(cfg: ModelConfig, pretrained_vectors) -> dict:
    """``model.embedding`` as block options: ``vectors: FILE`` is read by the run (it needs the
    vocabulary) and arrives here as a tensor; ``extend_vocab`` acted on the vocabulary."""
    emb = {"type": "tokens", **cfg.embedding}
    emb.pop("vectors", None)
    emb.pop("extend_vocab", None)
    if pretrained_vectors is not None:
        emb["pretrained"] = pretrained_vectors
    return emb


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def encode_tokens(encoder: nn.Module, embedding: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor):
    """``encoder(embedding(tokens), lengths)``, through the encoder's ``encode_tokens`` where it
    has one (the RNN encoders: per-token input projections at inference)."""
    fast = getattr(encoder, "encode_tokens", None)
    return fast(embedding, tokens, lengths) if fast is not None else encoder(embedding(tokens), lengths)


def word_starts(h: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-piece outputs ``h [B, P, D]`` at each word's first piece (``batch["first"] [B, W]``),
    and the word mask ``[B, W]`` (from ``batch["word_lengths"]``)."""
    first = batch["first"]
    words = h.gather(1, first.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
    return words, padding_mask(batch["word_lengths"], first.shape[1])


class TaskModel(nn.Module):
    """Shared head-facing API."""

    head: nn.Module

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        """The head's loss on this batch."""
        return self.head.loss(out["logits"], batch[self.target], mask=out.get("mask"))

    def predict(self, out: dict, batch: dict | None = None) -> torch.Tensor:
        """The head's predictions (class ids, or tag ids with -100 at padding)."""
        return self.head.predict(out["logits"], mask=out.get("mask"))

    def embedding_layer(self) -> nn.Module | None:
        """The module whose output is the token embeddings ``[B, T, D]`` (what attributions
        are computed over), or None when the input is not tokens (images: pixels)."""
        return getattr(self, "embedding", None)

    def attribution_baseline(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The "no information" input that integrated gradients start from: padding ids (their
        embedding is zero)."""
        return torch.zeros_like(tokens)


class TextClassifier(TaskModel):
    """``tokens [B, T] -> embedding -> encoder -> pooler -> classification head``."""

    target = "labels"

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, pretrained_vectors=None, **_):
        super().__init__()
        self.embedding = build_block(EMBEDDINGS, _embedding_options(cfg, pretrained_vectors), "model.embedding",
                                     vocab_size)
        self.encoder = build_block(ENCODERS, cfg.encoder, "model.encoder", self.embedding.out_dim,
                                   default_type="lstm")
        self.pooler = build_block(POOLERS, cfg.pooler, "model.pooler", self.encoder.out_dim,
                                  default_type="attention")
        self.head = build_block(HEADS, cfg.head, "model.head", self.pooler.out_dim, num_classes,
                                default_type="classification")

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Logits ``[B, C]`` (and pooling weights ``[B, heads, T]``)."""
        tokens, lengths = batch["tokens"], batch["lengths"]
        h = encode_tokens(self.encoder, self.embedding, tokens, lengths)
        pooled, w = self.pooler(h, lengths, need_weights=need_weights)
        return {"logits": self.head(pooled), "attention": w}


class TokenTagger(TaskModel):
    """``tokens [B, T] (+ chars [B, T, W]) -> embedding (+ char-CNN) -> encoder -> per-token head``;
    on word pieces (``model.init_from``), the head reads each word's first piece."""

    target = "tags"

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, char_vocab_size: int | None = None,
                 pretrained_vectors=None, **_):
        super().__init__()
        self.embedding = build_block(EMBEDDINGS, _embedding_options(cfg, pretrained_vectors), "model.embedding",
                                     vocab_size)
        width = self.embedding.out_dim
        self.chars = None
        if cfg.chars is not None:
            self.chars = CharCNN(char_vocab_size or 2, **cfg.chars)
            width += self.chars.out_dim
        self.encoder = build_block(ENCODERS, cfg.encoder, "model.encoder", width, default_type="lstm")
        self.head = build_block(HEADS, cfg.head, "model.head", self.encoder.out_dim, num_classes,
                                default_type="token_classification")

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Logits ``[B, T, K]`` and the padding mask."""
        tokens, lengths = batch["tokens"], batch["lengths"]
        if self.chars is None:
            h = encode_tokens(self.encoder, self.embedding, tokens, lengths)
        else:
            h = self.encoder(torch.cat([self.embedding(tokens), self.chars(batch["chars"])], -1), lengths)
        if "first" in batch:  # word pieces: one prediction per word
            words, mask = word_starts(h, batch)
            return {"logits": self.head(words), "mask": mask}
        return {"logits": self.head(h), "mask": padding_mask(lengths, tokens.shape[1])}


class ImageClassifier(TaskModel):
    """``images [B, C, H, W] -> image CNN -> pooler over positions -> classification head``."""

    target = "labels"

    def __init__(self, cfg: ModelConfig, num_classes: int, in_channels: int = 1, **_):
        super().__init__()
        self.encoder = build_block(ENCODERS, cfg.encoder, "model.encoder", in_channels, default_type="image_cnn")
        self.pooler = build_block(POOLERS, cfg.pooler, "model.pooler", self.encoder.out_dim,
                                  default_type="attention")
        self.head = build_block(HEADS, cfg.head, "model.head", self.pooler.out_dim, num_classes,
                                default_type="classification")

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Logits ``[B, C]`` (and pooling weights over the feature map's positions)."""
        h = self.encoder(batch["images"])
        pooled, w = self.pooler(h, full_lengths(h), need_weights=need_weights)
        return {"logits": self.head(pooled), "attention": w}
