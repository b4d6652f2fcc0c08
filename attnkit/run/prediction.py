"""Predicting with a trained run: raw inputs -> the task's encoding -> the batched prediction
path -> one JSON-ready record each."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data import infer_format, read_table
from ..data._common import numbered_lines
from ..data.readers import has_table_suffix
from ..deploy import attach_engine, engine_name
from ..errors import DataError
from ..rundir import LoadedRun, load_run
from ..tasks import predict_encoded
from ..tasks.featurizers import input_limit
from ..train.precision import PrecisionChoice, inference_precision, model_work

log = logging.getLogger("attnkit")


def predict(run_dir: str | Path | LoadedRun, texts: list, top_k: int | list[int] = 3, batch_size: int = 64,
            engine: str | None = None, precision: str | PrecisionChoice = "fp32") -> list[dict]:
    """Predictions for raw inputs, in order: ``{"text", "label", "scores": {label: prob}}`` for
    classifiers, ``{"text", "tokens", "tags"}`` for taggers (each task says its own). A run
    directory predicts on ``engine`` (None: the one its ``engine.json`` names, else torch); a
    loaded run on the engine it was given. ``precision``: fp32, bf16 or auto (the torch engine;
    see :mod:`attnkit.train.precision`), or a choice already made (the service makes it once).
    ``top_k``: one for all inputs, or one per input (the HTTP service batches requests that
    asked for different ``top_k``)."""
    run = run_dir if isinstance(run_dir, LoadedRun) else attach_engine(load_run(run_dir), engine)
    task, fz = run.task, run.featurized
    encoded = task.encode_inputs(fz, texts)
    say_what_was_cut(fz, texts, encoded)
    if not isinstance(precision, PrecisionChoice):
        first = encoded[:batch_size]  # what `auto` times
        work = model_work(run.model, lambda: predict_encoded(run.model, task, first, batch_size),
                          f"predict batch {len(first)}")
        precision = inference_precision(precision, engine=engine_name(run), work=work)
    with precision.autocast(run.model):
        preds = predict_encoded(run.model, task, encoded, batch_size)
    ks = [top_k] * len(texts) if isinstance(top_k, int) else list(top_k)
    return [task.prediction(fz, enc, pred, raw, k) for enc, pred, raw, k in zip(encoded, preds, texts, ks)]


def say_what_was_cut(fz, inputs, encoded) -> None:
    """One log line for inputs longer than the model reads, one for empty texts."""
    cut = [i for i, e in enumerate(encoded) if e.truncated]
    if cut:
        log.warning(f"{len(cut)} of {len(encoded)} input(s) are longer than the limit ({input_limit(fz)}): only "
                    f"their beginning was read (input {', '.join(str(i + 1) for i in cut[:5])}"
                    f"{' ...' if len(cut) > 5 else ''})")
    empty = [i for i, x in enumerate(inputs) if isinstance(x, str) and not x.strip()]
    if empty:
        log.warning(f"{len(empty)} input(s) are empty (input {', '.join(str(i + 1) for i in empty[:5])}): their "
                    f"prediction is the model's answer for no words")


def read_texts(path: str | Path, encoding: str = "auto", fmt: str | None = None, text_column: str = "text") -> list[str]:
    """The texts of ``predict --input FILE``: one per line (``fmt`` None or ``lines``; blank
    lines skipped and counted in the log), or the ``text_column`` of a table (``tsv``, ``csv``,
    ``jsonl``, ``json``; by the suffix when ``fmt`` is None). Undecodable bytes are an error
    naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--input: {path} not found")
    fmt = fmt or (infer_format(path) if has_table_suffix(path) else "lines")
    if fmt != "lines":
        return read_table(path, text_column, None, fmt=fmt, encoding=encoding).texts
    texts, blank = [], []
    for number, line in numbered_lines(path, encoding):
        line = line.rstrip("\r\n")
        if line.strip():
            texts.append(line)
        else:
            blank.append(number)
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (" ..." if len(blank) > 5 else "")
        log.warning(f"{path}: skipped {len(blank)} blank line(s) (line {shown})")
    return texts
