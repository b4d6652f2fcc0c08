"""Run a model over a data set in order and score its predictions."""
from __future__ import annotations

import torch

from .metrics import METRICS


@torch.no_grad()
def predict_all(model, data, batch_size: int = 256) -> tuple[list, list, float]:
    """Predictions and targets for every example of ``data`` (in order), and the mean loss.
    For taggers each item is the list of tag ids of one sentence (padding removed)."""
    was_training = model.training
    model.eval()
    preds, targets, loss_sum = [], [], 0.0
    try:
        for start in range(0, len(data), batch_size):
            idx = list(range(start, min(start + batch_size, len(data))))
            batch = data.collate(idx)
            out = model(batch)
            loss_sum += model.loss(out, batch).item() * len(idx)
            pred = model.predict(out, batch)
            gold = batch[model.target]
            if gold.dim() == 2:  # tags: strip padding per sentence (word counts for word-piece models)
                for p, g, n in zip(pred.tolist(), gold.tolist(), batch.get("word_lengths", batch["lengths"]).tolist()):
                    preds.append(p[:n])
                    targets.append(g[:n])
            else:
                preds += pred.tolist()
                targets += gold.tolist()
    finally:
        model.train(was_training)
    return preds, targets, loss_sum / max(len(data), 1)


def evaluate_model(model, data, label_names: list[str], batch_size: int = 256, out_of_scope: str | None = None) -> dict:
    """Loss and task metrics of ``model`` on ``data`` (classification, or entity F1 for taggers;
    ``out_of_scope``: see :func:`attnkit.evaluate.classification_metrics`)."""
    preds, targets, loss = predict_all(model, data, batch_size)
    if model.target == "tags":
        def to_names(seqs):
            return [[label_names[i] for i in s] for s in seqs]
        metrics = METRICS.get("tagging")(to_names(targets), to_names(preds))
    else:
        metrics = METRICS.get("classification")(targets, preds, label_names, out_of_scope)
    return {"loss": loss, **metrics}
