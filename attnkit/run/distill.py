"""The teacher's side of distillation (``train.distill.teacher`` / ``attnkit distill``): a
trained run scores the student's training split once, in the student's order and label
order, on the teacher's own encoding and engine (an exported teacher runs on ONNX Runtime)."""
from __future__ import annotations

import logging
import time

import torch

from ..deploy import attach_engine
from ..errors import AttnkitError, ConfigError
from ..rundir import load_run
from ..tasks import predict_data

log = logging.getLogger("attnkit")


def open_teacher(cfg, task):
    """The teacher run of ``train.distill.teacher`` on its engine, checked against the student:
    the same one-label task."""
    where = "train.distill.teacher"
    if task.target != "labels" or not task.categorical:
        raise ConfigError(f"train.distill: distillation learns a class distribution per example; task {cfg.task} "
                          f"has none (text and image classification do)")
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
    where = "train.distill.teacher"
    task = teacher.task
    names = teacher.featurized.labels
    missing = [name for name in student_labels if name not in names]
    if missing:
        raise ConfigError(f"{where}: the teacher does not know the student's label(s) {missing[:5]} (it knows "
                          f"{names[:10]})")
    raw_train = task.read_splits(cfg)[0]
    data = task.encode(teacher.featurized, raw_train)
    if len(data) != n_train:
        raise ConfigError(f"{where}: the teacher encodes {len(data)} training examples, the student {n_train}; "
                          f"give both the same data options")
    log.info(f"teacher {cfg.train.distill.teacher}: scoring {n_train:,} training examples once")
    t0 = time.perf_counter()
    probs, _, _ = predict_data(teacher.model, task, data, batch_size=cfg.train.eval_batch_size)
    log.info(f"teacher scored them in {time.perf_counter() - t0:.0f} s")
    order = torch.tensor([names.index(name) for name in student_labels])
    return torch.stack(probs).index_select(1, order).clamp_min(1e-12).log()
