"""Scores under attack: a run's metrics when each example's token embeddings are moved by PGD
within an L2 radius (``attnkit evaluate RUN --data FILE --attack pgd --epsilon 1``)."""
from __future__ import annotations

import torch

from ..train.adversarial import EmbeddingShift, pgd_delta


def attacked_predictions(model, task, data, epsilon: float, steps: int = 10, batch_size: int = 64) -> tuple[list, list]:
    """Predictions and gold of ``data`` with every batch's embeddings moved against the model's
    loss by ``steps`` PGD steps within ``epsilon`` (per example, L2 over all its embeddings);
    the model stays in eval mode (no dropout)."""
    shift = EmbeddingShift(model)
    was = model.training
    model.eval()
    preds, gold = [], []
    try:
        for start in range(0, len(data), batch_size):
            batch = data.collate(list(range(start, min(start + batch_size, len(data)))))
            with torch.enable_grad():
                with shift.shifted(probe=True):
                    loss = model.loss(model(batch), batch)
                (g,) = torch.autograd.grad(loss, shift.delta)
                r = pgd_delta(shift, lambda: model.loss(model(batch), batch), g, epsilon, steps)
            with torch.no_grad(), shift.shifted(r):
                p, y = task.decode(model, model(batch), batch)
            preds += p
            gold += y or []
    finally:
        model.train(was)
    return preds, gold


def attacked_metrics(model, task, data, featurized, epsilon: float, steps: int = 10) -> dict:
    """The task's metrics under the attack, with the attack stated (``attack``)."""
    preds, gold = attacked_predictions(model, task, data, epsilon, steps)
    out = task.score(preds, gold, featurized)
    out["attack"] = f"PGD on the token embeddings: {steps} steps, L2 radius {epsilon:g} per example"
    return out
