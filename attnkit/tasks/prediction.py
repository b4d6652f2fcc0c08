"""The one batched prediction path: a model run over a data set or over encoded raw inputs,
in order, batch by batch, with the task turning outputs into per-example predictions.
``evaluate``, ``predict``, the report and ``explain`` all go through here."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from .base import Encoded, Task


def stack_batches(batches: list[dict]) -> dict:
    """One batch from one-example batches: every tensor padded with 0 to the largest size in
    each dimension, then concatenated."""
    out = {}
    for key in batches[0]:
        ts = [b[key] for b in batches]
        size = [max(t.shape[d] for t in ts) for d in range(1, ts[0].dim())]
        padded = []
        for t in ts:
            pad = []
            for d in reversed(range(1, t.dim())):
                pad += [0, size[d - 1] - t.shape[d]]
            padded.append(F.pad(t, pad) if any(pad) else t)
        out[key] = torch.cat(padded)
    return out


def length_order(data) -> list[int]:
    """The examples of ``data`` shortest first (stable) when it knows their ``lengths``, so a
    batch pads to little more than its own examples' length; else in order. A multi-task set
    (``locate(i) -> (task, j)``) keeps its tasks apart: a batch mixing them runs once per task."""
    lengths = getattr(data, "lengths", None)
    if lengths is None or len(lengths) != len(data):
        return list(range(len(data)))
    lengths = lengths.tolist() if hasattr(lengths, "tolist") else list(lengths)
    locate = getattr(data, "locate", None)
    if locate is not None:
        return sorted(range(len(data)), key=lambda i: (locate(i)[0], lengths[i]))
    return sorted(range(len(data)), key=lengths.__getitem__)


def _data_batches(data, order: list[int], batch_size: int) -> Iterator[dict]:
    for start in range(0, len(order), batch_size):
        yield data.collate(order[start:start + batch_size])


def _in_data_order(items: list, order: list[int]) -> list:
    out = [None] * len(items)
    for position, i in enumerate(order):
        out[i] = items[position]
    return out


def _encoded_batches(encoded: list[Encoded], batch_size: int) -> Iterator[dict]:
    for start in range(0, len(encoded), batch_size):
        yield stack_batches([e.batch for e in encoded[start:start + batch_size]])


@torch.no_grad()
def run_batches(model, task: Task, batches: Iterable[dict], with_loss: bool = False) -> tuple[list, list, float]:
    """``(predictions, gold, summed loss)`` over ``batches`` in order (gold and loss only
    where the batches carry targets). The model is put in eval mode and restored after."""
    was_training = model.training
    model.eval()
    preds, gold, loss_sum = [], [], 0.0
    try:
        for batch in batches:
            out = model(batch)
            p, g = task.decode(model, out, batch)
            preds += p
            if g is not None:
                gold += g
                if with_loss:
                    loss_sum += model.loss(out, batch).item() * len(p)
    finally:
        model.train(was_training)
    return preds, gold, loss_sum


def predict_data(model, task: Task, data, batch_size: int = 256) -> tuple[list, list, float]:
    """Predictions, gold and the mean loss for every example of a data set, in order (run
    in batches of similar length: :func:`length_order`)."""
    order = length_order(data)
    preds, gold, loss = run_batches(model, task, _data_batches(data, order, batch_size), with_loss=True)
    return (_in_data_order(preds, order), _in_data_order(gold, order) if gold else gold,
            loss / max(len(data), 1))


def predict_encoded(model, task: Task, encoded: list[Encoded], batch_size: int = 64) -> list:
    """Predictions for encoded raw inputs (:meth:`Task.encode_inputs`), in order."""
    return run_batches(model, task, _encoded_batches(encoded, batch_size))[0] if encoded else []
