"""Tasks: one module each, behind one protocol (:class:`Task`) and one registry (``TASKS``).

A task reads its data files, builds its featurizer (words, or a pretrained tokenizer), encodes
raw inputs, builds its model, scores predictions and shows an example; nothing above this
layer names a task. Adding a task is one module plus ``register_task("name", MyTask())``
(see docs/tasks.md)."""
from .base import Encoded, Featurized, Prepared, Task
from .image_classification import ImageClassification
from .inspection import DataReport, inspect_data, preflight
from .masked_lm import MaskedLM
from .multitask import MultiTask
from .recommendation import Recommendation
from .prediction import predict_data, predict_encoded, run_batches, stack_batches
from .registry import TASKS, get_task, register_task
from .run_config import RunConfig, run_config
from .single_label import SingleLabel
from .text_classification import TextClassification
from .token_classification import TokenClassification
from .translation import Translation

register_task("text_classification", TextClassification())
register_task("token_classification", TokenClassification())
register_task("image_classification", ImageClassification())
register_task("translation", Translation())
register_task("recommendation", Recommendation())
register_task("masked_lm", MaskedLM())
register_task("multitask", MultiTask())


def build_model(task: str, cfg, **sizes):
    """The model of ``task`` for a ``model:`` config and the data's sizes (``vocab_size``,
    ``num_classes``, ``char_vocab_size``, ``in_channels``; ``backbone=`` passes a pretrained
    backbone already loaded)."""
    return get_task(task).build_model(cfg, **sizes)


def read_checked(cfg: RunConfig) -> tuple:
    """``(train, dev, test)`` as the config's task reads them, checked against the config
    (the pre-flight check: problems stop with one line)."""
    task = get_task(cfg.task)
    train, dev, test = task.read_splits(cfg)
    preflight(task, cfg, train, dev, test)
    return train, dev, test


def prepare(cfg: RunConfig, featurized: Featurized | None = None, splits=None) -> Prepared:
    """Data sets and the featurizer of a run config, through its task. ``featurized``: a run's
    own featurizer (its vocabularies and labels) instead of one fitted on the training split;
    ``splits``: the ``(train, dev, test)`` already read by :func:`read_checked`."""
    task = get_task(cfg.task)
    train, dev, test = read_checked(cfg) if splits is None else splits
    fz = task.fit(cfg, train) if featurized is None else featurized
    return Prepared(task.training_view(task.encode(fz, train)), task.encode(fz, dev),
                    None if test is None else task.encode(fz, test), fz)


def list_tasks() -> list[str]:
    """The registered task names."""
    return TASKS.names()


__all__ = ["TASKS", "DataReport", "Encoded", "Featurized", "Prepared", "RunConfig", "SingleLabel", "Task", "Translation", "build_model", "get_task",
           "inspect_data", "list_tasks", "predict_data", "predict_encoded", "prepare", "read_checked", "register_task", "run_batches", "run_config",
           "stack_batches"]
