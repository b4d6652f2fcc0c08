"""Evaluation: task metrics of a model on a data set or of a run on a file, as terminal tables."""
from ..tasks.metrics import classification_metrics, tagging_metrics
from .evaluate import evaluate_model, evaluate_run
from .tables import metrics_table, print_metrics

__all__ = ["classification_metrics", "evaluate_model", "evaluate_run", "metrics_table", "print_metrics",
           "tagging_metrics"]
