"""The teacher's side of distillation (``train.distill.teacher`` / ``attnkit distill``): a
trained run scores the student's training split once (and the transfer set of
``train.distill.augment``), in the student's order and label order, on the teacher's own
encoding and engine (an exported teacher runs on ONNX Runtime)."""
from __future__ import annotations

import functools
import logging
import time

import torch

from ..data import TableData
from ..data.augment import transfer_texts
from ..deploy import attach_engine, engine_name
from ..errors import AttnkitError, ConfigError
from ..rundir import load_run
from ..tasks import predict_data
from ..train.precision import PrecisionChoice, batch_size_text, inference_precision, model_work
from .score_cache import cache_file, key_of, load_scores, save_scores, teacher_digest, texts_digest

log = logging.getLogger("attnkit")


def open_teacher(cfg, task):
    """The teacher run of ``train.distill.teacher`` on its engine, checked against the student:
    the same one-label task."""
    where = "train.distill.teacher"
    if task.target != "labels" or not task.categorical:
        raise ConfigError(f"train.distill: distillation learns a class distribution per example; task {cfg.task} "
                          f"has none (text and image classification do)")
    if cfg.train.distill.augment and task.inputs != "text":
        raise ConfigError(f"train.distill.augment: the transfer set is made of texts; task {cfg.task} has none "
                          f"(text classification does)")
    try:
        teacher = attach_engine(load_run(cfg.train.distill.teacher))
    except AttnkitError as e:
        raise ConfigError(f"{where}: {e}") from None
    if teacher.cfg.task != cfg.task:
        raise ConfigError(f"{where}: {cfg.train.distill.teacher} is a {teacher.cfg.task} run; the student is "
                          f"{cfg.task}")
    return teacher


def teacher_log_probs(teacher, cfg, student_labels: list[str], n_train: int) -> torch.Tensor:
    """``[n_train, classes]`` log-probabilities of the teacher run on the student's training
    split (read again from ``cfg.data``: the same seeded split), columns in student label order."""
    raw_train = teacher.task.read_splits(cfg)[0]
    data = teacher.task.encode(teacher.featurized, raw_train)
    if len(data) != n_train:
        raise ConfigError(f"train.distill.teacher: the teacher encodes {len(data)} training examples, the student "
                          f"{n_train}; give both the same data options")
    return _scored(teacher, cfg, data, student_labels, "training examples", getattr(raw_train, "texts", None))


def _scored(teacher, cfg, data, student_labels: list[str], what: str, texts: list[str] | None = None) -> torch.Tensor:
    """The teacher's log-probabilities of encoded ``data``, columns in student label order;
    with the ``texts`` it encodes, kept in the score cache (:mod:`attnkit.run.score_cache`),
    which is read first (under ``auto``, an entry of either precision)."""
    names = teacher.featurized.labels
    missing = [name for name in student_labels if name not in names]
    if missing:
        raise ConfigError(f"train.distill.teacher: the teacher does not know the student's label(s) {missing[:5]} "
                          f"(it knows {names[:10]})")
    asked, engine = cfg.train.distill.precision, engine_name(teacher)
    # the teacher's files and the texts are hashed once, each precision's key made from them
    key = None if texts is None else functools.partial(key_of, teacher_digest(teacher), engine,
                                                       of_texts=texts_digest(texts))
    probs = None
    for name in (("bf16", "fp32") if asked == "auto" and engine == "torch" else (asked,)) if key else ():
        probs = load_scores(key(name), len(data), len(names))
        if probs is not None:
            log.info(f"teacher {cfg.train.distill.teacher}: {len(data):,} {what} scored before ({name}), read "
                     f"from the cache ({cache_file(key(name))})")
            break
    if probs is None:
        precision = _scoring_precision(teacher, cfg, data, engine)
        log.info(f"teacher {cfg.train.distill.teacher}: scoring {len(data):,} {what} once ({precision})")
        t0 = time.perf_counter()
        with precision.autocast(teacher.model):
            rows, _, _ = predict_data(teacher.model, teacher.task, data, batch_size=cfg.train.eval_batch_size)
        probs = torch.stack(rows).float()
        log.info(f"teacher scored them in {time.perf_counter() - t0:.0f} s")
        if key:
            save_scores(key(precision.name), probs)
    order = torch.tensor([names.index(name) for name in student_labels])
    return probs.index_select(1, order).clamp_min(1e-12).log()


def _scoring_precision(teacher, cfg, data, engine: str | None = None) -> PrecisionChoice:
    """``train.distill.precision`` for the teacher's scoring; ``auto`` times one batch of
    ``data`` both ways, except in a data-parallel run (fp32 there: ranks timing the teacher
    apart could choose apart, and every rank must score the same rows). A teacher on ONNX
    Runtime scores in the precision it was exported in."""
    name, engine = cfg.train.distill.precision, engine or engine_name(teacher)
    where = "train.distill.precision"
    if engine == "torch" and name == "auto":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return PrecisionChoice("fp32", "auto: fp32 in a data-parallel run, so that every rank scores alike")
        if len(data) == 0:
            return PrecisionChoice("fp32", "auto: nothing to score")
        batch = data.collate(list(range(min(len(data), cfg.train.eval_batch_size))))
        work = model_work(teacher.model, lambda: teacher.model(batch), f"score batch {batch_size_text(batch)}")
        return inference_precision(name, where, engine, work)
    return inference_precision(name, where, engine)


def with_transfer_set(teacher, cfg, task, fz, train_data, log_probs: torch.Tensor):
    """``(training data, teacher rows)``: the student's training split (``train_data``, handed
    back as it is when the set comes out empty) followed by the transfer set of
    ``train.distill.augment`` (:func:`attnkit.data.augment.transfer_texts`), each new text
    labelled with the teacher's top class (the hard term's label: a pseudo-label, weighted
    ``1 - alpha`` like the true ones) and its distribution. Every rank of a data-parallel run
    builds and scores the same set (deterministic: the split seed and ``train.seed``)."""
    raw = task.read_splits(cfg)[0]
    tokenizer = teacher.featurized.vocabs.get("tokenizer")
    texts = transfer_texts(raw.texts, cfg.train.distill.augment, seed=cfg.train.seed,
                           mask_token=getattr(tokenizer, "mask_token", None) or "[MASK]")
    log.info(f"transfer set: {len(texts):,} new texts from {len(raw):,} training texts (an epoch covers both)")
    if not texts:
        return train_data, log_probs

    def table(labels):
        return TableData(path=f"{raw.path} (transfer set)", texts=texts, labels=labels, lines=[0] * len(texts))
    # the teacher encodes them with any label it knows; the label is replaced by its own verdict
    extra = _scored(teacher, cfg, teacher.task.encode(teacher.featurized, table([fz.labels[0]] * len(texts))),
                    fz.labels, "transfer-set texts", texts)
    labelled = table([fz.labels[i] for i in extra.argmax(-1).tolist()])
    both = TableData(path=raw.path, texts=raw.texts + labelled.texts, labels=raw.labels + labelled.labels,
                     lines=raw.lines + labelled.lines)
    return task.training_view(task.encode(fz, both)), torch.cat([log_probs, extra])
