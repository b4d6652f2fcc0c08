"""Knowledge distillation (Hinton et al., 2015): the student learns from the teacher's
softened class distribution as well as from the labels,

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

The ``T^2`` keeps the soft term's gradients on the scale of the hard term's as ``T`` grows.
The teacher's log-probabilities are computed once before training (by :mod:`attnkit.run`)
and ride along in each batch under ``teacher``, so the teacher may read its own word pieces
while the student reads words."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import checked, closed_unit, non_negative, positive
from .precision import precision_error


@dataclass
class DistillConfig:
    """``train.distill``: learn from a trained teacher run as well as from the labels."""

    teacher: str | None = None  # the teacher's run directory; None = no distillation
    temperature: float = checked(2.0, positive)  # softens both distributions
    alpha: float = checked(0.5, closed_unit)  # weight of the teacher's term (1 - alpha: the labels')
    # transfer set (text classification): up to this many new texts per training text, made by
    # masking, swapping and cutting words (attnkit.data.augment), labelled by the teacher
    augment: int = checked(0, non_negative)
    # the teacher's scoring (once, before training): fp32, bf16 or auto (bf16 only where it
    # measures faster on the teacher's own batch: attnkit.train.precision; about 3x on AMX)
    precision: str = checked("fp32", precision_error)


class WithTeacher:
    """A training data set whose batches also carry the teacher's log-probabilities
    (``teacher [B, C]``); everything else is the wrapped data set's."""

    def __init__(self, data, log_probs: torch.Tensor):
        if len(log_probs) != len(data):
            raise ValueError(f"{len(log_probs)} teacher rows for {len(data)} training examples")
        self.data, self.log_probs = data, log_probs

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str):
        if name == "data":
            raise AttributeError(name)
        return getattr(self.data, name)

    def collate(self, indices: list[int]) -> dict:
        """The wrapped batch plus ``teacher``."""
        batch = self.data.collate(indices)
        batch["teacher"] = self.log_probs[torch.as_tensor(indices, dtype=torch.long)]
        return batch


def distillation_loss(model, cfg: DistillConfig):
    """``loss(out, batch)`` for the trainer: the soft term against ``batch["teacher"]`` mixed
    with the model's own loss on the labels."""
    t, alpha = cfg.temperature, cfg.alpha

    def loss(out: dict, batch: dict) -> torch.Tensor:
        hard = model.loss(out, batch)
        student = F.log_softmax(out["logits"].float() / t, -1)
        teacher = F.log_softmax(batch["teacher"].float() / t, -1)
        soft = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * (t * t)
        return alpha * soft + (1 - alpha) * hard

    return loss
