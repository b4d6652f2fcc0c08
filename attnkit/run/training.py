"""Training a run end to end: config -> task (data, featurizer, model) -> Trainer -> run
directory -> evaluation -> report."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import apply_overrides, load_yaml, to_dict
from ..evaluate import evaluate_model
from ..files import write_json
from ..models import count_parameters
from ..report import write_report
from ..run_files import RunFiles
from ..rundir import check_new_run_dir, check_same_config, save_weights, write_run_start
from ..tasks import RunConfig, get_task, prepare, run_config
from ..train import Trainer, load_checkpoint

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
    raw = load_yaml(config) if isinstance(config, (str, Path)) else dict(config)
    return run_config(apply_overrides(raw, list(overrides)))


def default_run_dir(config) -> Path:
    """``runs/<config file stem or name>``."""
    stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
    return Path("runs") / stem


def train(config, out: str | Path | None = None, overrides=(), resume: bool = False,
          progress: bool | None = None) -> TrainResult:
    """Train a run end to end: config -> data -> model -> Trainer -> run directory."""
    cfg = resolve_config(config, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(config)
    files = RunFiles(run_dir)
    check_new_run_dir(run_dir, cfg, resume)
    if resume:  # the config and --set values given must make the very config the run started with
        files.clean_leftovers()
        cfg = check_same_config(run_dir, cfg)
    task = get_task(cfg.task)
    prepared = prepare(cfg)  # its splits and shuffles use their own seeded generators
    fz = prepared.featurized
    extra = task.initial_weights(fz)
    torch.manual_seed(cfg.train.seed)
    model = task.build_model(cfg.model, **fz.sizes, **extra)  # before writing anything: bad configs leave no run
    write_run_start(run_dir, cfg, prepared, model)
    trainable, n_params = count_parameters(model)
    share = f" ({trainable:,} trainable, {100 * trainable / n_params:.2f}%)" if trainable < n_params else ""
    log.info(f"{cfg.task}: {len(prepared.train)} train / {len(prepared.dev)} dev examples; model "
             f"{n_params:,} parameters{share}; run directory {run_dir}")

    def evaluate(m, d):
        return evaluate_model(m, d, fz.labels, cfg.train.eval_batch_size, task=task, featurized=fz)
    trainer = Trainer(model, prepared.train, prepared.dev, cfg.train, run_dir, evaluate, progress=progress,
                      minimize=task.minimize(cfg.train.metric))
    trainer.fit(resume=resume)
    best = load_checkpoint(files.best_checkpoint)
    trainer.load_model_state(best["model"])
    save_weights(model, files.weights)
    dev = evaluate(model, prepared.dev)
    test = evaluate(model, prepared.test) if _has_targets(prepared.test, task.target) else None
    write_json(files.eval, {"dev": dev, "test": test, "best_epoch": best.get("epoch")})
    if cfg.train.report:
        write_report_safely(run_dir)
    return TrainResult(run_dir, dev, test)


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
