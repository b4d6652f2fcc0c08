"""Predicting with a trained run: raw inputs -> the task's encoding -> the batched prediction
path -> one JSON-ready record each."""
from __future__ import annotations

from pathlib import Path

from ..rundir import LoadedRun, load_run
from ..tasks import predict_encoded


def predict(run_dir: str | Path | LoadedRun, texts: list, top_k: int = 3, batch_size: int = 64) -> list[dict]:
    """Predictions for raw inputs, in order: ``{"text", "label", "scores": {label: prob}}`` for
    classifiers, ``{"text", "tokens", "tags"}`` for taggers (each task says its own)."""
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    task, fz = run.task, run.featurized
    encoded = task.encode_inputs(fz, texts)
    preds = predict_encoded(run.model, task, encoded, batch_size)
    return [task.prediction(fz, enc, pred, raw, top_k) for enc, pred, raw in zip(encoded, preds, texts)]
