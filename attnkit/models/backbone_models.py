"""Task models on a pretrained backbone: ``word pieces -> backbone -> attnkit pooler/head``.

They share the :class:`attnkit.models.TaskModel` API (``forward(batch)``, ``loss``,
``predict``), so the trainer, evaluation and the CLI treat them like from-scratch models.
A run saves only the parameters that trained (:meth:`PretrainedTaskModel.trained_state`);
the rest is reloaded from ``model.pretrained``."""
from __future__ import annotations

import torch
from torch import nn

from ..finetune.backbones import load_backbone
from ..finetune.encoder import BackboneEncoder
from ..finetune.methods import FinetuneConfig, apply_method
from ..nn import HEADS, POOLERS
from .builder import build_block
from .classifiers import TaskModel, word_starts

FIRST_POSITION_POOLERS = ("cls", "first")


def _finetune_config(cfg) -> FinetuneConfig:
    ft = cfg.finetune
    return ft if isinstance(ft, FinetuneConfig) else FinetuneConfig(**(ft or {}))


class PretrainedTaskModel(TaskModel):
    """Backbone + method; subclasses add the pooler/head."""

    def __init__(self, cfg, backbone: nn.Module | None = None):
        super().__init__()
        self.finetune = ft = _finetune_config(cfg)
        backbone = backbone if backbone is not None else load_backbone(cfg.pretrained)[0]
        self.encoder = BackboneEncoder(apply_method(backbone, ft), fast=ft.fast)

    def embedding_layer(self) -> nn.Module:
        """The backbone's word-piece embedding (attributions are over its output)."""
        return self.encoder.base.embeddings.word_embeddings

    def attribution_baseline(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[CLS] [PAD] ... [PAD] [SEP]``: the special tokens kept, every word piece padding."""
        base = torch.full_like(tokens, self.encoder.pad_id)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        last = (lengths - 1).clamp(min=0).to(tokens.device)
        base[:, 0] = tokens[:, 0]
        base[rows, last] = tokens[rows, last]
        return base

    def lr_scale(self, name: str) -> float:
        """Layer-wise learning-rate decay: ``layer_decay ** (L - l)`` for layer ``l`` of ``L``
        (embeddings are layer 0; the head and pooler 1.0)."""
        decay = self.finetune.layer_decay
        if decay == 1.0 or not name.startswith("encoder."):
            return 1.0
        n = len(self.encoder.layers)
        if ".embeddings." in name:
            return decay ** n
        marker = ".layer."
        if marker in name:
            index = name.split(marker, 1)[1].split(".", 1)[0]
            if index.isdigit():
                return decay ** (n - (int(index) + 1))
        return 1.0

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that train (and the head's buffers): what a run saves."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items()
                if k in keep or not k.startswith("encoder.")}

    def load_trained_state(self, state: dict[str, torch.Tensor], where: str = "weights") -> None:
        """Load a :meth:`trained_state` (or a full state dict) on top of the pretrained weights."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        needed = {n for n, p in self.named_parameters() if p.requires_grad}
        lost = [k for k in missing if k in needed]
        if lost or unexpected:
            raise ValueError(f"{where}: weights do not match the model (missing {lost[:3]}, unexpected {unexpected[:3]})")


class PretrainedTextClassifier(PretrainedTaskModel):
    """``pieces -> backbone -> pooler -> classification head``. The pooler ``cls`` (default)
    is the backbone's own pooler on ``[CLS]`` (dense + tanh, as in BERT's sequence
    classifier) when it has one, else the first position; any attnkit pooler (``attention``
    with any score, ``mean``, ``max``, ``first``) works over the backbone's outputs."""

    target = "labels"

    def __init__(self, cfg, num_classes: int, backbone: nn.Module | None = None, **_):
        super().__init__(cfg, backbone)
        dim = self.encoder.out_dim
        pooler = dict(cfg.pooler or {})
        self.pooler_type = pooler.get("type", "cls")
        self.pooler = None
        if self.pooler_type != "cls":
            self.pooler = build_block(POOLERS, pooler, "model.pooler", dim)
            dim = self.pooler.out_dim
        self.first_only = self.pooler_type in FIRST_POSITION_POOLERS
        head = {"dropout": 0.1, **(cfg.head or {})}
        self.head = build_block(HEADS, head, "model.head", dim, num_classes, default_type="classification")

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Logits ``[B, C]`` (and pooling weights for an attention pooler)."""
        tokens, lengths = batch["tokens"], batch["lengths"]
        h = self.encoder(tokens, lengths, first_only=self.first_only)
        weights = None
        if self.pooler is None:
            own = getattr(self.encoder.base, "pooler", None)
            pooled = own(h[:, :1]) if own is not None else h[:, 0]
        else:
            pooled, weights = self.pooler(h[:, :1] if self.first_only else h, lengths, need_weights=need_weights)
        return {"logits": self.head(pooled), "attention": weights}


class PretrainedTokenTagger(PretrainedTaskModel):
    """``pieces -> backbone -> the first piece of every word -> token head`` (word-level
    logits, so loss, CRF and predictions are per word)."""

    target = "tags"

    def __init__(self, cfg, num_classes: int, backbone: nn.Module | None = None, **_):
        super().__init__(cfg, backbone)
        head = {"dropout": 0.1, **(cfg.head or {})}
        self.head = build_block(HEADS, head, "model.head", self.encoder.out_dim, num_classes,
                                default_type="token_classification")

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Word-level logits ``[B, W, K]`` and the word mask."""
        words, mask = word_starts(self.encoder(batch["tokens"], batch["lengths"]), batch)
        return {"logits": self.head(words), "mask": mask}
