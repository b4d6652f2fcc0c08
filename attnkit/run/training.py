"""Training a run end to end: config -> task (data, featurizer, model) -> Trainer -> run
directory -> evaluation -> report."""
from __future__ import annotations

import contextlib
import copy
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import apply_overrides, load_yaml, to_dict
from ..errors import AttnkitError, ConfigError
from ..evaluate import evaluate_model
from ..files import write_json
from ..models import count_parameters
from ..report import write_report
from ..run_files import RunFiles
from ..rundir import check_new_run_dir, check_same_config, check_same_vocabs, save_weights, write_run_start
from ..tasks import RunConfig, get_task, prepare, read_checked, run_config
from ..train import Trainer, WithTeacher, distillation_loss, load_checkpoint
from ..train.distributed import World, barrier, init_from_env
from .distill import open_teacher, teacher_log_probs, with_transfer_set
from .init_from import load_pretrained_blocks, merge_pretrained_blocks

log = logging.getLogger("attnkit")


@dataclass
class TrainResult:
    """Where the run is and how it scored."""

    run_dir: Path
    dev: dict
    test: dict | None


def resolve_config(config: str | Path | dict | RunConfig, overrides=()) -> RunConfig:
    """A validated RunConfig from a YAML path, a mapping or a RunConfig, with ``--set`` overrides."""
    if isinstance(config, RunConfig):
        config = to_dict(config)
    raw = load_yaml(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)  # overrides change nested dicts
    raw.pop("tune", None)  # the search space of `attnkit tune`; training trains the values written
    return run_config(merge_pretrained_blocks(apply_overrides(raw, list(overrides))))


def _checked_config(config, run_dir: Path, overrides, resume: bool) -> RunConfig:
    """The run config, once the run directory may take it (read-only: nothing is written);
    resuming, the config and ``--set`` values must make the very config the run started with."""
    cfg = resolve_config(config, overrides)
    check_new_run_dir(run_dir, resume)
    return check_same_config(run_dir, cfg) if resume else cfg


def check_before_launch(config, run_dir: Path, overrides=(), resume: bool = False) -> None:
    """What ``train --nproc`` checks once before it starts the ranks (each would stop on it
    alike): the config, the run directory, the data files against the config."""
    read_checked(_checked_config(config, run_dir, overrides, resume))


def default_run_dir(config) -> Path:
    """``runs/<config file stem or name>``."""
    stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
    return Path("runs") / stem


def train(config, out: str | Path | None = None, overrides=(), resume: bool = False,
          progress: bool | None = None, on_epoch=None) -> TrainResult:
    """Train a run end to end: config -> data -> model -> Trainer -> run directory.
    ``on_epoch(epoch, dev_metrics)`` is called after every epoch (``attnkit tune`` reports
    to its pruner there; raising stops the run)."""
    run_dir = Path(out) if out is not None else default_run_dir(config)
    files = RunFiles(run_dir)
    world = init_from_env()  # a data-parallel run under torchrun (one rank of 1 otherwise)
    cfg = _checked_config(config, run_dir, overrides, resume)  # every rank checks before rank 0 writes anything
    barrier(world)
    if resume and world.main:
        files.clean_leftovers()
    task = get_task(cfg.task)
    teacher = open_teacher(cfg, task) if cfg.train.distill.teacher else None  # before anything is read or written
    prepared = prepare(cfg)  # its splits and shuffles use their own seeded generators
    if resume:
        check_same_vocabs(run_dir, prepared)
    fz = prepared.featurized
    check_model_fits(task, cfg, fz.sizes)
    extra = task.initial_weights(fz)
    torch.manual_seed(cfg.train.seed)
    with _no_half_written_run(run_dir) if world.main else contextlib.nullcontext():
        model = task.build_model(cfg.model, **fz.sizes, **extra)  # before writing anything: bad configs leave no run
        if cfg.model.init_from and not resume:  # a resumed run's checkpoint holds the weights
            load_pretrained_blocks(model, cfg.model.init_from)
        return _fit(task, cfg, prepared, model, run_dir, resume, progress, teacher, on_epoch, world)


def train_model(cfg: RunConfig, prepared, model, out: str | Path, progress: bool | None = None) -> TrainResult:
    """Train an already built ``model`` (a pruned run's, say) on ``prepared`` under ``cfg``
    into the new run directory ``out``: the Trainer, the best epoch, eval.json, as
    :func:`train` does after building its model."""
    run_dir = Path(out)
    check_new_run_dir(run_dir, False)
    with _no_half_written_run(run_dir):
        return _fit(get_task(cfg.task), cfg, prepared, model, run_dir, False, progress, None, None, World())


def _fit(task, cfg: RunConfig, prepared, model, run_dir: Path, resume: bool, progress,
         teacher, on_epoch, world) -> TrainResult:
    files, fz = RunFiles(run_dir), prepared.featurized
    if world.main:
        write_run_start(run_dir, cfg, prepared, model)
    barrier(world)
    trainable, n_params = count_parameters(model)
    share = f" ({trainable:,} trainable, {100 * trainable / n_params:.2f}%)" if trainable < n_params else ""
    ranks = f"; {world.size} ranks x batch {cfg.train.batch_size}" if world.distributed else ""
    log.info(f"{cfg.task}: {len(prepared.train)} train / {len(prepared.dev)} dev examples; model "
             f"{n_params:,} parameters{share}; run directory {run_dir}{ranks}")

    def evaluate(m, d):
        return evaluate_model(m, d, fz.labels, cfg.train.eval_batch_size, task=task, featurized=fz)

    def evaluate_epoch(m, d):  # the dev score that picks the best epoch (a translation: greedy by default)
        with task.dev_evaluation(m):
            metrics = evaluate(m, d)
        warning = task.progress_warning(metrics, fz)
        if warning:
            log.warning(warning)
        return metrics
    train_data, loss = prepared.train, None
    if teacher is not None:
        rows = teacher_log_probs(teacher, cfg, fz.labels, len(prepared.train))
        if cfg.train.distill.augment:
            train_data, rows = with_transfer_set(teacher, cfg, task, fz, train_data, rows)
        train_data = WithTeacher(train_data, rows)
        loss = distillation_loss(model, cfg.train.distill)
    trainer = Trainer(model, train_data, prepared.dev, cfg.train, run_dir, evaluate_epoch, progress=progress,
                      minimize=task.minimize(cfg.train.metric), loss=loss, on_epoch=on_epoch)
    trainer.fit(resume=resume)
    if world.distributed:
        barrier(world)  # rank 0's last checkpoint is written
        if not world.main:  # rank 0 evaluates, saves and reports
            return TrainResult(run_dir, {}, None)
    best = load_checkpoint(files.best_checkpoint)
    trainer.load_model_state(best["model"])
    averaged = _average_if_better(task, cfg, trainer, best.get("dev", {}), evaluate, prepared.dev)
    dev = evaluate(model, prepared.dev)
    save_weights(model, files.weights)
    test = evaluate(model, prepared.test) if _has_targets(prepared.test, task.target) else None
    warning = task.progress_warning(dev, fz)
    write_json(files.eval, {"dev": dev, "test": test, "best_epoch": best.get("epoch"),
                            "weights": "average of the last epochs" if averaged is not None else "best epoch",
                            **({"warning": warning} if warning else {})})
    parts = task.parts(cfg, prepared, model)
    for name, (part_cfg, part_prepared, part_model) in parts.items():  # a multi-task run: one run per task
        _write_part_run(files.part(name), part_cfg, part_prepared, part_model, cfg.train.report)
    if cfg.train.report and not parts:
        write_report_safely(run_dir)
    return TrainResult(run_dir, dev, test)


def _write_part_run(run_dir: Path, cfg: RunConfig, prepared, model, report: bool) -> None:
    """One task of a multi-task run as a complete single-task run directory (its weights, its
    dev/test scores, its report)."""
    task = get_task(cfg.task)
    write_run_start(run_dir, cfg, prepared, model)
    save_weights(model, RunFiles(run_dir).weights)

    def evaluate(data):
        return evaluate_model(model, data, prepared.label_names, cfg.train.eval_batch_size, task=task,
                              featurized=prepared.featurized)
    test = evaluate(prepared.test) if _has_targets(prepared.test, task.target) else None
    write_json(RunFiles(run_dir).eval, {"dev": evaluate(prepared.dev), "test": test,
                                        "weights": "the multi-task run's best epoch"})
    if report:
        write_report_safely(run_dir)


def _average_if_better(task, cfg: RunConfig, trainer, best_dev: dict, evaluate, dev_data) -> dict | None:
    """With ``train.average_last: N``: the mean weights of the last N epochs, loaded into the
    model when their dev metric is at least the best epoch's (returned then); else the best
    epoch's weights are put back and None is returned."""
    paths = trainer.averaged_checkpoints() if cfg.train.average_last > 1 else []
    if len(paths) < 2:
        return None
    from ..train import average_weights

    best_state = trainer.model_state()
    best_state = {k: v.clone() for k, v in best_state.items()}
    trainer.load_model_state(average_weights(paths))
    with task.dev_evaluation(trainer.model):  # compared with the best epoch's score, measured the same way
        dev = evaluate(trainer.model, dev_data)
    metric = cfg.train.metric
    a, b = dev.get(metric), best_dev.get(metric)
    better = a is not None and b is not None and (a <= b if task.minimize(metric) else a >= b)
    log.info(f"average of the last {len(paths)} epochs: dev {metric} {a:.4f} vs best epoch {b:.4f}; keeping "
             f"{'the average' if better else 'the best epoch'}")
    if better:
        return dev
    trainer.load_model_state(best_state)
    return None


BYTES_PER_TRAINED_PARAMETER = 16  # fp32 weight, gradient and Adam's two moments


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_model_fits(task, cfg: RunConfig, sizes: dict) -> None:
    """Refuse, before allocating anything, a model from blocks whose training state cannot fit
    in memory (a typo like ``hidden: 30000`` would otherwise get the process killed). The
    model is built on PyTorch's ``meta`` device, which allocates nothing, to count it."""
    if cfg.model.pretrained is not None:  # a backbone's size is what it is
        return
    with torch.device("meta"):
        n = sum(p.numel() for p in task.build_model(cfg.model, **sizes).parameters())
    need, have = n * BYTES_PER_TRAINED_PARAMETER, available_memory()
    if have is not None and need > 0.8 * have:
        raise ConfigError(f"model: {n:,} parameters need about {need / 2**30:,.1f} GiB to train (weights, "
                          f"gradients, optimiser state), more than the {have / 2**30:,.1f} GiB available here; make "
                          f"the blocks smaller (model.embedding.dim, model.encoder.hidden, layers ...)")


@contextlib.contextmanager
def _no_half_written_run(run_dir: Path):
    """A run that fails before its first checkpoint leaves nothing behind (when it made the
    directory); running out of memory is one line saying what to lower."""
    created = not run_dir.exists()
    try:
        yield
    except BaseException as e:
        _remove_if_nothing_saved(run_dir, created)
        text = str(e)
        first = (text.splitlines() or [type(e).__name__])[0][:160]
        if isinstance(e, MemoryError) or isinstance(e, RuntimeError) and (
                "can't allocate memory" in text or "out of memory" in text.lower()):
            raise TrainingError(f"out of memory while training ({first}); lower "
                                f"train.batch_size, data.max_len or the model's size") from None
        raise


def _remove_if_nothing_saved(run_dir: Path, created: bool) -> None:
    if created and run_dir.is_dir() and not RunFiles(run_dir).last_checkpoint.exists():
        shutil.rmtree(run_dir, ignore_errors=True)


class TrainingError(AttnkitError):
    """Training could not go on (e.g. out of memory)."""


def write_report_safely(run_dir: Path) -> Path | None:
    """``RUN/report.html``; a failure is reported and never costs the finished run."""
    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001  (the run is saved; the report can be rewritten with `attnkit report`)
        log.warning(f"report.html not written ({type(e).__name__}: {e}); the run is complete; retry with "
                    f"`attnkit report {run_dir}`")
        return None


def _has_targets(data, target: str) -> bool:
    return data is not None and len(data) > 0 and target in data.collate([0])
