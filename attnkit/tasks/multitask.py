"""Multi-task training: several text tasks (classification, tagging) with one shared embedding
and encoder, a head each, one sampling schedule, per-task metrics.

The config's ``multitask.tasks`` names each task as a single-task run (its ``data`` over the
run's ``data:``, the run's ``model:`` with its own ``pooler``/``head``); every task is read,
checked and featurized by its own task module. Words come from one vocabulary built from
every task's training text (word pieces: the shared tokenizer, ``model.init_from`` or
``model.pretrained``). Dev metrics are each task's, prefixed ``NAME/``, and ``mean_score``:
the mean of each task's own metric (what picks the best epoch by default).

After training, ``RUN/tasks/NAME/`` is a complete single-task run of each task (the shared
blocks with its head): ``predict``, ``evaluate``, ``explain``, ``report``, ``serve`` take it
like any other run."""
from __future__ import annotations

from dataclasses import dataclass

from .. import data as D
from ..config import from_dict, to_dict
from ..data.multitask_data import MultiTaskData
from ..errors import AttnkitError, ConfigError, DataError
from ..models import ModelConfig
from ..models.multitask import MultiTaskModel
from . import featurizers as F
from .base import Featurized, Prepared, Task
from .inspection import preflight
from .registry import get_task

PART_MODEL_KEYS = ("pooler", "head")
TO_A_PART = ("a multi-task run works through its tasks' runs: use RUN/tasks/NAME (written when training ends) "
             "with predict, evaluate, explain, report, serve and export")


class Splits(dict):
    """One split of every task that has it: name -> raw split, with ``tasks``: name -> task."""

    def __init__(self, tasks: dict):
        super().__init__()
        self.tasks = tasks


@dataclass
class Part:
    """One task of a multi-task run: its task module, its single-task config, its featurizer."""

    task: Task
    cfg: object
    fz: Featurized | None = None


def part_configs(cfg) -> dict:
    """Each task's single-task RunConfig: its data over the run's, the run's model with its own
    pooler/head, the run's training options with its own dev metric."""
    from .run_config import RunConfig

    out = {}
    for name, spec in cfg.multitask.tasks.items():
        data = {**to_dict(cfg.data), **(spec.get("data") or {})}
        model = to_dict(cfg.model)
        for key in PART_MODEL_KEYS:
            if key in spec:
                model[key] = spec[key]
        train = {**to_dict(cfg.train), "metric": spec.get("metric")}
        try:
            out[name] = from_dict(RunConfig, {"task": spec["task"], "data": data, "model": model, "train": train})
        except (ConfigError, DataError) as e:
            raise type(e)(f"multitask.tasks.{name}: {e}") from None
    return out


def _parts(cfg) -> dict[str, Part]:
    return {name: Part(get_task(c.task), c) for name, c in part_configs(cfg).items()}


def _metric_names(parts: dict[str, Part]) -> list[str]:
    return ["loss", "mean_score", *(f"{name}/{m}" for name, p in parts.items() for m in p.task.metric_names(p.cfg))]


class MultiTask(Task):
    """Several tasks, one shared encoder (see the module docstring)."""

    target = "parts"
    default_metric = "mean_score"
    categorical = False  # each task's own pre-flight check compares its dev labels with its train
    counts_gold = False
    export_refusal = TO_A_PART
    explain_refusal = TO_A_PART

    # ---------------------------------------------------------------- config
    def check_config(self, cfg) -> None:
        """A ``multitask:`` section whose tasks are valid single-task runs with text inputs, and
        whose metrics are ones where higher is better (``mean_score`` averages them)."""
        if cfg.multitask is None:
            raise ConfigError("multitask: required with task: multitask (multitask.tasks: {NAME: {task: ..., "
                              "data: {train: ...}}, ...})")
        if cfg.data.train is not None or cfg.data.builtin is not None:
            raise ConfigError("data.train: a multi-task run reads each task's data (multitask.tasks.NAME.data); "
                              "data: holds the options they share")
        if cfg.model.chars is not None:
            raise ConfigError("model.chars: not in a multi-task run (the shared encoder reads the word embedding "
                              "alone); remove it")
        if cfg.train.max_tokens:
            raise ConfigError("train.max_tokens: a multi-task run batches by train.batch_size; set max_tokens to 0")
        parts = _parts(cfg)
        for name, part in parts.items():
            if not part.task.shares_text_encoder:
                raise ConfigError(f"multitask.tasks.{name}.task: {part.cfg.task} cannot share a text encoder "
                                  f"(text classification and tagging can)")
            if part.task.minimize(part.cfg.train.metric):
                raise ConfigError(f"multitask.tasks.{name}.metric: {part.cfg.train.metric} is lower-is-better; "
                                  f"mean_score averages metrics where higher is better")
        known = _metric_names(parts)
        if cfg.train.metric not in known:
            raise ConfigError(f"train.metric: {cfg.train.metric!r} is not computed here; known: mean_score, "
                              f"loss or NAME/METRIC ({', '.join(known[2:6])} ...)")

    def metric_names(self, cfg) -> list[str]:
        """``loss``, ``mean_score`` and every task's metrics as ``NAME/METRIC``."""
        return _metric_names(_parts(cfg) if cfg.multitask is not None else {})

    def minimize(self, metric: str) -> bool:
        """``mean_score``: higher is better; ``NAME/METRIC``: lower only for losses (the tasks
        that share an encoder, classification and tagging, have no other lower-is-better metric)."""
        if metric == "mean_score":
            return False
        _, _, own = metric.partition("/")
        return own.endswith("loss") or metric.endswith("loss")

    # ---------------------------------------------------------------- data
    def read_splits(self, cfg):
        """Every task's splits, each read and checked (pre-flight) by its own task."""
        parts = _parts(cfg)
        tasks = {name: p.task for name, p in parts.items()}
        splits = (Splits(tasks), Splits(tasks), Splits(tasks))
        for name, part in parts.items():
            try:
                raw = part.task.read_splits(part.cfg)
                preflight(part.task, part.cfg, *raw)
            except AttnkitError as e:
                raise type(e)(f"multitask.tasks.{name}: {e}") from None
            for held, r in zip(splits, raw):
                if r is not None:
                    held[name] = r
        return splits[0], splits[1], splits[2] or None

    def read_file(self, cfg, path):
        """Not for a multi-task run (see ``TO_A_PART``)."""
        raise DataError(TO_A_PART)

    def examples(self, raw):
        """Every task's inputs and gold, task after task."""
        inputs, gold = [], []
        for name, r in (raw or {}).items():
            i, g = raw.tasks[name].examples(r)
            inputs += i
            gold += g
        return inputs, gold

    def fit(self, cfg, train) -> Featurized:
        """Each task's featurizer, with one word vocabulary from all their training texts."""
        parts = _parts(cfg)
        for name, part in parts.items():
            part.fz = part.task.fit(part.cfg, train[name])
        if not F.uses_pieces(cfg):  # each task's texts split as it reads them (its data.tokenizer)
            words = (D.get_tokenizer(p.cfg.data.tokenizer)(t) for name, p in parts.items()
                     for t in p.task.examples(train[name])[0])
            vocab = F.word_vocab(cfg, words)
            for part in parts.values():
                part.fz.vocabs["vocab.json"] = vocab
                part.fz.sizes["vocab_size"] = len(vocab)
            vocabs = {"vocab.json": vocab}
        else:
            vocabs = {"tokenizer": next(iter(parts.values())).fz.vocabs["tokenizer"]}
        sizes = {"tasks": {name: {"task": p.cfg.task, "model": to_dict(p.cfg.model), "sizes": p.fz.sizes}
                           for name, p in parts.items()}}
        return Featurized(cfg, vocabs, [], sizes, parts=parts)

    def encode(self, fz: Featurized, raw):
        """Each task's split encoded by its task, as one data set."""
        return MultiTaskData({name: fz.parts[name].task.encode(fz.parts[name].fz, r) for name, r in raw.items()},
                             fz.cfg.multitask.sampling, fz.cfg.multitask.temperature)

    def initial_weights(self, fz: Featurized) -> dict:
        """Word vectors for the shared embedding (``model.embedding.vectors``)."""
        return F.word_vectors(fz)

    def encode_inputs(self, fz, inputs):
        """Not for a multi-task run (see ``TO_A_PART``)."""
        raise DataError(TO_A_PART)

    # ---------------------------------------------------------------- model and scores
    def build_model(self, model_cfg, tasks: dict | None = None, pretrained_vectors=None, **_):
        """Every task's model, sharing the first one's embedding (with word vectors, if any)
        and encoder."""
        if not tasks:
            raise ConfigError("multitask: no tasks to build a model for")
        models = {}
        for name, spec in tasks.items():
            extra = {"pretrained_vectors": pretrained_vectors} if not models and pretrained_vectors is not None else {}
            models[name] = get_task(spec["task"]).build_model(from_dict(ModelConfig, spec["model"], "model"),
                                                              **spec["sizes"], **extra)
        return MultiTaskModel(models, {name: spec["task"] for name, spec in tasks.items()})

    def decode(self, model, out, batch):
        """Each part decoded by its task; predictions and gold tagged with the task's name."""
        preds, gold, complete = [], [], True
        for (name, o), (_, b) in zip(out["parts"], batch["parts"]):
            p, g = get_task(model.tasks[name]).decode(model.models[name], o, b)
            preds += [(name, x) for x in p]
            if g is None:
                complete = False
            else:
                gold += [(name, x) for x in g]
        return preds, gold if complete else None

    def score(self, preds, gold, fz: Featurized) -> dict:
        """Each task's scores as ``NAME/METRIC`` and ``mean_score``."""
        out, primary = {}, []
        for name, part in fz.parts.items():
            p = [x for n, x in preds if n == name]
            g = [x for n, x in gold if n == name]
            if not p:
                continue
            scores = part.task.score(p, g, part.fz)
            for key, value in scores.items():
                out[f"{name}/{key}"] = value
            if part.cfg.train.metric in scores:
                primary.append(scores[part.cfg.train.metric])
        out["mean_score"] = sum(primary) / len(primary) if primary else float("nan")
        return out

    def parts(self, cfg, prepared: Prepared, model) -> dict:
        """``{name: (single-task config, its Prepared, its model)}``: what ``RUN/tasks/NAME`` holds."""
        fz = prepared.featurized
        out = {}
        for name, part in fz.parts.items():
            def split(data):
                return None if data is None or name not in data.parts else data.parts[name]
            out[name] = (part.cfg, Prepared(split(prepared.train), split(prepared.dev), split(prepared.test), part.fz),
                         model.models[name])
        return out
