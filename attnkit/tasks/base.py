"""What a task is: the one protocol every task module implements.

A task turns data files into batches, builds its model, scores predictions and shows one
example. Everything above this layer (training, evaluation, prediction, explanations, the
report, the CLI) asks the task and never names one.

A task has two featurizers, chosen by the config: words (a vocabulary built from the training
split) for models from blocks, or a pretrained backbone's own tokenizer (``model.pretrained``).
Both are saved with the run, so a run directory encodes new inputs by itself."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError

SAMPLE_WORDS = ("the service was quick and the staff were kind but Paris felt far from home so we "
                "left early on Monday").split()


@dataclass
class Featurized:
    """What encoding needs, at training time and from a saved run alike: the run config,
    the saved vocabularies (file name -> object with ``save(path)``; ``tokenizer`` for a
    backbone's tokenizer), the label names, the model's sizes and data statistics."""

    cfg: Any
    vocabs: dict
    labels: list[str]
    sizes: dict
    stats: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)  # a multi-task run's tasks while it trains (not saved)

    @property
    def pieces(self) -> bool:
        """Whether inputs are a pretrained backbone's word pieces (else words)."""
        return "tokenizer" in self.vocabs


@dataclass
class Prepared:
    """Everything the trainer and the run directory need from the data."""

    train: object
    dev: object
    test: object | None
    featurized: Featurized

    @property
    def label_names(self) -> list[str]:
        """The label (or tag) names, index = class id."""
        return self.featurized.labels

    @property
    def sizes(self) -> dict:
        """Constructor sizes of the model (``vocab_size``, ``num_classes`` ...)."""
        return self.featurized.sizes

    @property
    def vocabs(self) -> dict:
        """Vocabularies saved with the run."""
        return self.featurized.vocabs

    @property
    def stats(self) -> dict:
        """Data statistics saved in ``meta.json`` (image mean/std)."""
        return self.featurized.stats


@dataclass
class Encoded:
    """One raw input as the model reads it: a one-example batch, display units (words) and
    which unit each model position belongs to (None: a special token)."""

    batch: dict
    units: list[str]
    unit_of: list[int | None]
    pieces: list[str]
    image: np.ndarray | None = None
    truncated: bool = False  # the input was longer than the model reads: only its beginning is in ``batch``


class Task:
    """The protocol of a task; subclass it in one module of ``attnkit/tasks`` and register it
    with ``TASKS.register("name")(YourTask())``. Methods without a default must be given."""

    #: the batch key holding the targets (the model's ``target``)
    target: ClassVar[str] = "labels"
    #: what ``predict``/``explain`` take: ``"text"`` or ``"image"``
    inputs: ClassVar[str] = "text"
    #: the dev metric that picks the best epoch when ``train.metric`` is not set
    default_metric: ClassVar[str] = "accuracy"
    #: whether gold answers are names from a fixed set (classes, tags): a dev/test answer never
    #: seen in train is then a problem the pre-flight check reports (False for regression)
    categorical: ClassVar[bool] = True
    #: whether predictions are text the model writes (translation): ``attnkit translate`` takes such runs
    writes_text: ClassVar[bool] = False
    #: whether ``inspect-data`` counts the gold answers as labels (not for free text such as translations)
    counts_gold: ClassVar[bool] = True
    #: the data format when ``data.format`` is not set and the path does not tell (None: a table, by its suffix)
    data_format: ClassVar[str | None] = None
    #: metrics where lower is better (besides ``loss``), e.g. ``("mse", "mae")``
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    #: why this task's model cannot be exported as one graph (``attnkit export``); None: it can
    export_refusal: ClassVar[str | None] = None
    #: whether the task's model is embedding -> text encoder -> its own head, so a multi-task run can
    #: share the embedding and encoder with other such tasks
    shares_text_encoder: ClassVar[bool] = False
    #: why per-input explanations (``attnkit explain``, the report's saliency and attention per
    #: example) do not apply to this task; None: they do
    explain_refusal: ClassVar[str | None] = None
    #: file name -> class with ``load(path)`` of what the featurizer saves besides the standard
    #: vocabularies (``vocab.json``, ``labels.json`` ...): a run directory reloads them by it
    vocab_types: ClassVar[dict] = {}

    name: str = ""

    # ---------------------------------------------------------------- data
    def read_splits(self, cfg) -> tuple[Any, Any, Any]:
        """``(train, dev, test)`` as read from ``cfg.data`` (raw, before featurizing); dev is
        held out of train when not given; test may be None."""
        raise NotImplementedError

    def read_file(self, cfg, path) -> Any:
        """One labelled file in the run's data format (``attnkit evaluate --data``)."""
        raise NotImplementedError

    def fit(self, cfg, train) -> Featurized:
        """The featurizer built from the training split: vocabularies, labels, sizes."""
        raise NotImplementedError

    def encode(self, fz: Featurized, raw) -> Any:
        """A raw split as a data set with ``__len__``, ``collate(indices)`` and, for
        length-bucketed batches, ``lengths``."""
        raise NotImplementedError

    def training_view(self, data):
        """What the trainer iterates of the encoded training split: the split itself by default
        (``masked_lm`` masks anew for every batch, where its dev split keeps fixed masks)."""
        return data

    def examples(self, raw) -> tuple[list, list]:
        """A raw split as ``(inputs, gold)``: what ``encode_inputs`` takes, and the gold
        answers as names (report gallery)."""
        raise NotImplementedError

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Raw inputs (texts, images) as one-example batches with their display units."""
        raise NotImplementedError

    def sample_inputs(self, fz: Featurized, count: int, size: int) -> list:
        """``count`` made-up raw inputs, the first ``size`` units long and each next one shorter
        (at least 1): what ``attnkit export`` traces and checks the graph with."""
        return [" ".join(SAMPLE_WORDS[(i + j) % len(SAMPLE_WORDS)] for j in range(max(1, size - i)))
                for i in range(count)]

    # ---------------------------------------------------------------- model and scores
    def initial_weights(self, fz: Featurized) -> dict:
        """Extra constructor arguments when training starts (e.g. word vectors); none by default."""
        return {}

    def build_model(self, model_cfg, **sizes) -> torch.nn.Module:
        """The model (from blocks, or on ``model_cfg.pretrained``) for these sizes."""
        raise NotImplementedError

    def decode(self, model, out: dict, batch: dict) -> tuple[list, list | None]:
        """Per-example predictions of one batch and, when the batch has targets, the gold."""
        raise NotImplementedError

    def metric_names(self, cfg) -> list[str]:
        """The dev metrics :meth:`score` computes (``train.metric`` must be one of them)."""
        raise NotImplementedError

    def score(self, preds: list, gold: list, fz: Featurized) -> dict:
        """Metrics of predictions (from :meth:`decode`) against gold."""
        raise NotImplementedError

    # ---------------------------------------------------------------- showing results
    def prediction(self, fz: Featurized, enc: Encoded, pred, raw, top_k: int = 3) -> dict:
        """One prediction as plain JSON-ready data (``attnkit predict --json``)."""
        raise NotImplementedError

    def render_prediction(self, record: dict) -> str:
        """One line of terminal text for :meth:`prediction`'s record (rich markup allowed)."""
        raise NotImplementedError

    def is_correct(self, pred, gold, fz: Featurized) -> bool:
        """Whether a prediction matches its gold answer (report gallery)."""
        raise NotImplementedError

    def explain_word(self, pred, gold, fz: Featurized) -> int | None:
        """For per-token tasks, which word's prediction the report explains (None: the whole)."""
        return None

    def dev_evaluation(self, model):
        """A context in which the trainer scores the dev set after each epoch (a translation
        decodes with ``model.search.dev_beam`` there); nothing changes by default."""
        return contextlib.nullcontext()

    def alignment(self, model, enc: Encoded, pred, fz: Featurized):
        """For tasks that write text, ``(matrix [written, source], written units, source units)``:
        what each output unit attended to (report and ``explain``); None for the others."""
        return None

    def example_html(self, enc: Encoded, pred, gold, fz: Featurized) -> str:
        """The report's heading of one dev example (HTML)."""
        raise NotImplementedError

    def parts(self, cfg, prepared: Prepared, model) -> dict:
        """For a run made of several tasks: ``{name: (config, Prepared, model)}`` of each, which
        training writes as a complete single-task run ``RUN/tasks/NAME``; none by default."""
        return {}

    def progress_warning(self, dev: dict, fz: Featurized) -> str | None:
        """A warning after an epoch's dev metrics when they show training going nowhere (said
        in the log and kept in ``eval.json``); None by default."""
        return None

    def minimize(self, metric: str) -> bool:
        """Whether a lower value of ``metric`` is better."""
        return metric.endswith("loss") or metric in self.lower_is_better

    # ---------------------------------------------------------------- checks
    def check_config(self, cfg) -> None:
        """Everything that can be checked before training (a data source, the metric name ...)."""
        cfg.data.require_source()
        known = self.metric_names(cfg)
        if cfg.train.metric not in known:
            raise ConfigError(f"train.metric: {cfg.train.metric!r} is not computed for task {self.name}; "
                              f"known: {', '.join(known)}")
