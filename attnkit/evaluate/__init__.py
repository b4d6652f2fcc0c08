"""Evaluation: metrics (scikit-learn, seqeval) and model evaluation over a data set."""
from .evaluate import evaluate_model, predict_all
from .metrics import METRICS, classification_metrics, tagging_metrics

__all__ = ["METRICS", "classification_metrics", "evaluate_model", "predict_all", "tagging_metrics"]
