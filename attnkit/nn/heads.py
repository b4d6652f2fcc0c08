"""Output heads. Each maps features to logits and owns its loss and its prediction rule,
so the trainer does not branch on the task."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.dropout import Dropout
from .crf import CRF
from .registry import HEADS


@HEADS.register("classification")
class ClassificationHead(nn.Module):
    """``pooled [B, D] -> logits [B, C]`` (optional hidden layer); cross-entropy loss with
    optional label smoothing and class weights."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0,
                 label_smoothing: float = 0.0, class_weights: list[float] | None = None):
        super().__init__()
        layers: list[nn.Module] = [Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32)
                             if class_weights else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(x)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, **_) -> torch.Tensor:
        """Mean cross-entropy."""
        return F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing)

    def predict(self, logits: torch.Tensor, **_) -> torch.Tensor:
        """Arg-max class ids."""
        return logits.argmax(-1)


@HEADS.register("token_classification")
class TokenClassificationHead(nn.Module):
    """``h [B, T, D] -> logits [B, T, K]``; softmax cross-entropy per token (padding labels
    -100 ignored) or, with ``crf: true``, a linear-chain CRF."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0, crf: bool = False,
                 label_smoothing: float = 0.0, class_weights: list[float] | None = None):
        super().__init__()
        self.drop = Dropout(dropout)
        self.proj = nn.Linear(in_dim, num_classes)
        self.crf = CRF(num_classes) if crf else None
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32)
                             if class_weights else None)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Per-token emission scores."""
        return self.proj(self.drop(h))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token cross-entropy, or CRF negative log-likelihood."""
        if self.crf is not None:
            return self.crf.nll(logits, labels, labels != -100 if mask is None else mask)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                               weight=self.class_weights, label_smoothing=self.label_smoothing)

    def predict(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tag ids ``[B, T]`` (-100 at padding when a mask is given)."""
        if self.crf is not None:
            return self.crf.decode(logits, torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
                                   if mask is None else mask)
        pred = logits.argmax(-1)
        return pred if mask is None else pred.masked_fill(~mask, -100)
