"""Task metrics, computed by scikit-learn and seqeval (not re-implemented):

* classification: accuracy, macro/micro/weighted precision, recall and F1, per-class
  scores and the confusion matrix;
* BIO tagging: entity-level precision/recall/F1 exactly as seqeval computes them (its
  default CoNLL mode), per entity type, plus token accuracy.
"""
from __future__ import annotations

import numpy as np

CLASSIFICATION_METRICS = tuple(["accuracy"] + [f"{avg}_{m}" for avg in ("macro", "micro", "weighted")
                                                for m in ("precision", "recall", "f1")])
TAGGING_METRICS = ("f1", "precision", "recall", "token_accuracy")


def classification_metrics(y_true, y_pred, label_names: list[str], out_of_scope: str | None = None) -> dict:
    """Scores for single-label classification; ``y_*`` are class ids. With ``out_of_scope``
    (a label meaning "none of the intents", CLINC150's ``oos``) also ``in_scope_accuracy``
    (accuracy on the other examples) and ``oos_recall`` / ``oos_precision``."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(label_names)))
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "n": len(y_true)}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(label_names)}
    out["confusion_matrix"] = {"labels": list(label_names),
                               "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist()}
    if out_of_scope is not None and out_of_scope in label_names:
        k = label_names.index(out_of_scope)
        inside = y_true != k
        out["in_scope_accuracy"] = float(accuracy_score(y_true[inside], y_pred[inside])) if inside.any() else 0.0
        out["oos_recall"] = out["per_class"][out_of_scope]["recall"]
        out["oos_precision"] = out["per_class"][out_of_scope]["precision"]
    return out


def tagging_metrics(true_tags: list[list[str]], pred_tags: list[list[str]], label_names=None) -> dict:
    """Entity-level scores for BIO tag sequences (lists of tag strings per sentence)."""
    from seqeval.metrics import (
        classification_report,
        f1_score,
        precision_score,
        recall_score,
    )

    flat_t = [t for s in true_tags for t in s]
    flat_p = [t for s in pred_tags for t in s]
    out = {"f1": float(f1_score(true_tags, pred_tags, zero_division=0)),
           "precision": float(precision_score(true_tags, pred_tags, zero_division=0)),
           "recall": float(recall_score(true_tags, pred_tags, zero_division=0)),
           "token_accuracy": float(np.mean([a == b for a, b in zip(flat_t, flat_p)])) if flat_t else 0.0,
           "n": len(true_tags)}
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    out["per_class"] = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                            "f1": float(v["f1-score"]), "support": int(v["support"])}
                        for k, v in report.items() if "avg" not in k}
    return out


TRANSLATION_METRICS = ("bleu", "bleu_lc", "chrf")


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """sacreBLEU's corpus scores of detokenised ``hypotheses`` against one reference each:
    ``bleu`` (cased, 13a tokenisation: sacreBLEU's default), ``bleu_lc`` (lowercased, as the
    published Multi30k tutorials report), ``chrf``, with their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return {"bleu": 0.0, "bleu_lc": 0.0, "chrf": 0.0, "n": 0}
    out = {"n": len(hypotheses)}
    for name, metric in (("bleu", BLEU()), ("bleu_lc", BLEU(lowercase=True)), ("chrf", CHRF())):
        res = metric.corpus_score(hypotheses, [references])
        out[name] = float(res.score)
        out[f"{name}_signature"] = str(metric.get_signature())
    return out
