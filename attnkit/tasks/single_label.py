"""What every one-label-per-example task shares (text and image classification, and any
other task whose model ends in a classification head): class probabilities as predictions,
scikit-learn's classification scores, the top-k scores of a prediction."""
from __future__ import annotations

import torch

from .base import Featurized
from .metrics import CLASSIFICATION_METRICS, classification_metrics

OUT_OF_SCOPE_METRICS = ("in_scope_accuracy", "oos_recall", "oos_precision")


class SingleLabel:
    """Mixin for a :class:`~attnkit.tasks.base.Task` with one class per example."""

    target = "labels"
    default_metric = "accuracy"

    def decode(self, model, out, batch):
        """Class probabilities per example; gold label ids."""
        probs = torch.softmax(out["logits"].float(), -1)
        gold = batch["labels"].tolist() if "labels" in batch else None
        return list(probs), gold

    def metric_names(self, cfg) -> list[str]:
        """Classification metrics (and the out-of-scope ones with ``data.out_of_scope``)."""
        extra = OUT_OF_SCOPE_METRICS if getattr(cfg.data, "out_of_scope", None) else ()
        return ["loss", *CLASSIFICATION_METRICS, *extra]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """scikit-learn's classification scores (out-of-scope recall with ``data.out_of_scope``)."""
        ids = [int(p.argmax()) for p in preds]
        return classification_metrics(gold, ids, fz.labels, getattr(fz.cfg.data, "out_of_scope", None))

    def is_correct(self, pred, gold, fz: Featurized) -> bool:
        """The top class is the gold label."""
        return fz.labels[int(pred.argmax())] == gold


def top_scores(names: list[str], probs: torch.Tensor, top_k: int) -> dict:
    """``{"label": best, "scores": {label: probability}}`` for the ``top_k`` best classes."""
    top = probs.topk(min(top_k, len(names)))
    return {"label": names[int(probs.argmax())],
            "scores": {names[i]: round(float(p), 4) for p, i in zip(top.values, top.indices)}}
