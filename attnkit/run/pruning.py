"""``attnkit prune --recover-epochs N``: structured pruning (:func:`attnkit.deploy.prune_run`)
followed by a short fine-tuning of the smaller model on the run's own training split, so
the remaining heads and neurons take over the work of the removed ones (the usual
prune-then-fine-tune recipe; pruning alone scores with the survivors as they were trained).

The recovery trains under the run's own ``train`` settings (optimiser, learning rate,
schedule, precision) with ``train.epochs`` set to ``N`` and any ``--set`` overrides, on
the run's own vocabularies and labels, and keeps the best epoch by the dev metric. Nothing
appears at ``--out`` until the pruned and recovered run is complete."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..deploy import prune_run
from ..errors import ConfigError
from ..evaluate import evaluate_model
from ..files import write_json
from ..run_files import WEIGHTS, RunFiles
from ..rundir import check_new_out, derived_run, load_run, open_run, read_eval, read_meta, save_weights
from ..tasks import prepare, read_checked
from .training import resolve_config, train_model

log = logging.getLogger("attnkit")


def prune(run_dir: str | Path, out: str | Path, heads: float, ffn: float = 0.0, data: str | Path | None = None,
          examples: int = 1024, recover_epochs: int = 0, overrides=(), progress: bool | None = None) -> Path:
    """Write ``out``: ``run_dir`` without the ``heads`` / ``ffn`` fractions of its least
    important heads and feed-forward neurons, then (``recover_epochs`` > 0) fine-tuned for
    that many epochs. Its ``eval.json`` holds the recovered model's dev score and
    ``meta.json`` a ``recovered`` record (epochs, overrides, dev before and after, the
    recovery's per-epoch history)."""
    if recover_epochs < 0:
        raise ConfigError(f"--recover-epochs: must be 0 (no fine-tuning after pruning) or more, got {recover_epochs}")
    if not recover_epochs:
        if overrides:
            raise ConfigError("--set: applies to the fine-tuning after pruning; give --recover-epochs N with it")
        return prune_run(run_dir, out, heads, ffn, data, examples, progress=progress)
    out = Path(out)
    check_new_out(out)
    settings, checked = _recovery_settings(run_dir, recover_epochs, list(overrides))
    splits = read_checked(checked)  # data problems too, before the pruning
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".recover"))
    try:
        pruned = prune_run(run_dir, scratch / "pruned", heads, ffn, data, examples, progress=progress)
        run = load_run(pruned)
        cfg = resolve_config(run.cfg, settings)
        prepared = prepare(cfg, run.featurized, splits)  # the run's own vocabularies and labels, not refitted
        before = evaluate_model(run.model, prepared.dev, run.featurized.labels, cfg.train.eval_batch_size,
                                task=run.task, featurized=run.featurized)  # the pruned model's own score
        log.info(f"recovering the pruned model: {recover_epochs} epoch(s) of {len(prepared.train):,} examples")
        result = train_model(cfg, prepared, run.model, scratch / "training", progress)
        trained = RunFiles(result.run_dir)
        with derived_run(pruned, out, skip=(WEIGHTS,)) as final:  # the pruned weights: replaced below
            files = RunFiles(final)
            save_weights(run.model, files.weights, everything=True)
            write_json(files.eval, {**read_eval(trained.root), "weights": f"pruned, then fine-tuned {recover_epochs} "
                                                                           f"epoch(s)"})
            meta = read_meta(final)
            meta["recovered"] = {"epochs": recover_epochs, "overrides": list(overrides), "metric": cfg.train.metric,
                                 "dev_before": before, "dev_after": result.dev, "history": trained.read_metrics()}
            write_json(files.meta, meta)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _recovery_settings(run_dir, epochs: int, overrides: list[str]):
    """``(settings, config)``: the recovery's ``--set`` values, checked (``train.*`` only, the
    epochs from ``--recover-epochs``, a learning rate of its own for a run whose rate was its
    adapters'), and the run's config with them."""
    keys = [str(o).split("=", 1)[0].strip() for o in overrides]
    for o, key in zip(overrides, keys):
        if not key.startswith("train."):
            raise ConfigError(f"--set {o}: the recovery fine-tuning takes train.* values only (the model is the "
                              f"pruned one)")
        if key == "train.epochs":
            raise ConfigError(f"--set {o}: the recovery's epochs are --recover-epochs")
    cfg = open_run(run_dir)[0]
    method = cfg.model.finetune.method
    if method != "full" and "train.optimizer.lr" not in keys:
        raise ConfigError(f"{run_dir}: a {method} run's learning rate ({cfg.train.optimizer.lr:g}) was its "
                          f"adapters'; the recovery fine-tunes every weight of the merged model: give it one with "
                          f"--set train.optimizer.lr=RATE (full fine-tuning commonly uses 2e-5 to 1e-4)")
    settings = [f"train.epochs={epochs}", "train.report=false", *overrides]
    checked = resolve_config(cfg, settings)  # a bad value stops here, before the slow pruning
    if cfg.train.distill.teacher:
        log.info("the recovery trains on the labels: the run's distillation teacher is not used")
    return settings, checked
