"""A masked language model from the same blocks as the classifiers: ``tokens -> embedding ->
encoder -> MLM head``. Its ``embedding`` and ``encoder`` are what ``model.init_from`` copies
into a classifier or tagger afterwards.

The head is BERT's (dense, GELU, LayerNorm, then a projection onto the vocabulary whose
weight is the embedding table when the widths agree). Logits are computed only at the
positions that are predicted (the masked ones), not at every position: the projection onto
an 8,000-piece vocabulary costs as much as a small encoder, and 85% of it would be thrown away."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.masked_text import IGNORE
from ..nn import EMBEDDINGS, ENCODERS
from .builder import build_block
from .classifiers import TaskModel, _embedding_options
from .model_config import ModelConfig


class MLMHead(nn.Module):
    """``h [N, D] -> logits [N, V]``: dense, GELU, LayerNorm, projection (``tied``: the
    embedding table ``[V, D]`` is the projection's weight)."""

    def __init__(self, dim: int, vocab_size: int, tied: nn.Parameter | None = None):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.decoder = nn.Linear(dim, vocab_size)
        if tied is not None:
            self.decoder.weight = tied

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary."""
        return self.decoder(self.transform(h))


class MaskedLanguageModel(TaskModel):
    """``tokens [B, T] -> embedding -> encoder (default: transformer) -> MLM head``. With
    ``targets`` in the batch it predicts where they are not -100; without, at ``mask_id``."""

    target = "targets"

    def __init__(self, cfg: ModelConfig, vocab_size: int, mask_id: int, first_ordinary: int = 0, **_):
        super().__init__()
        self.mask_id = mask_id
        # ids below first_ordinary (padding, <mask> ...) are never the answer: their logits are -inf, so
        # the tied table's padding row gets no gradient through the head and stays zero
        self.register_buffer("never", torch.arange(vocab_size) < first_ordinary, persistent=False)
        self.has_never = first_ordinary > 0
        self.embedding = build_block(EMBEDDINGS, _embedding_options(cfg, None), "model.embedding", vocab_size)
        self.encoder = build_block(ENCODERS, cfg.encoder, "model.encoder", self.embedding.out_dim,
                                   default_type="transformer")
        table = getattr(self.embedding, "embed", None)
        tied = table.weight if isinstance(table, nn.Embedding) and table.weight.shape[1] == self.encoder.out_dim \
            else None
        self.head = MLMHead(self.encoder.out_dim, vocab_size, tied)

    def predicted_positions(self, batch: dict) -> torch.Tensor:
        """``[B, T]`` bool: where the model predicts (``predict``; else where targets are given,
        else at the mask pieces)."""
        if "predict" in batch:
            return batch["predict"].bool()
        if "targets" in batch:
            return batch["targets"] != IGNORE
        return batch["tokens"] == self.mask_id

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """``logits [N, V]`` at the ``N`` predicted positions, with ``where [B, T]`` saying which."""
        tokens, lengths = batch["tokens"], batch["lengths"]
        weights = {"need_weights": True} if need_weights else {}  # encoders without attention take no such flag
        h = self.encoder(self.embedding(tokens), lengths, **weights)
        where = self.predicted_positions(batch)
        logits = self.head(h[where])
        if self.has_never:
            logits = logits.masked_fill(self.never, float("-inf"))
        return {"logits": logits, "where": where}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over the predicted pieces that have a target (a ``<mask>`` typed
        by a user has none)."""
        gold = batch["targets"][out["where"]]
        logits = out["logits"]
        if not bool((gold != IGNORE).any()):
            return logits.nan_to_num(0.0, 0.0, 0.0).sum() * 0.0
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        return F.cross_entropy(logits, gold, ignore_index=IGNORE)

    def predict(self, out: dict, batch: dict | None = None) -> torch.Tensor:
        """The most likely piece id at each predicted position ``[N]``."""
        return out["logits"].argmax(-1)
