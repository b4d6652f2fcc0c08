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
from ..run_files import RunFiles
from ..rundir import check_new_out, derived_run, load_run, open_run, read_meta, save_weights
from ..tasks import Prepared, read_checked
from .training import resolve_config, train_model

log = logging.getLogger("attnkit")


def prune(run_dir: str | Path, out: str | Path, heads: float, ffn: float = 0.0, data: str | Path | None = None,
          examples: int = 1024, recover_epochs: int = 0, overrides=(), progress: bool | None = None) -> Path:
    """Write ``out``: ``run_dir`` without the ``heads`` / ``ffn`` fractions of its least
    important heads and feed-forward neurons, then (``recover_epochs`` > 0) fine-tuned for
    that many epochs. Its ``eval.json`` holds the recovered model's dev score and
    ``meta.json`` a ``recovered`` record (epochs, overrides, dev before and after)."""
    if recover_epochs < 0:
        raise ConfigError(f"--recover-epochs: must be 0 (no fine-tuning after pruning) or more, got {recover_epochs}")
    if not recover_epochs:
        if overrides:
            raise ConfigError("--set: applies to the fine-tuning after pruning; give --recover-epochs N with it")
        return prune_run(run_dir, out, heads, ffn, data, examples, progress=progress)
    other = [o for o in overrides if not str(o).startswith("train.")]
    if other:
        raise ConfigError(f"--set {other[0]}: the recovery fine-tuning takes train.* values only (the model is "
                          f"the pruned one)")
    out = Path(out)
    check_new_out(out)
    settings = [f"train.epochs={recover_epochs}", "train.report=false", *overrides]
    resolve_config(open_run(run_dir)[0], settings)  # a bad --set stops here, before the slow pruning
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".recover"))
    try:
        pruned = prune_run(run_dir, scratch / "pruned", heads, ffn, data, examples, progress=progress)
        run = load_run(pruned)
        cfg = resolve_config(run.cfg, settings)
        task, fz = run.task, run.featurized  # the run's own vocabularies and labels, not refitted
        train, dev, test = read_checked(cfg)
        prepared = Prepared(task.training_view(task.encode(fz, train)), task.encode(fz, dev),
                            None if test is None else task.encode(fz, test), fz)
        before = evaluate_model(run.model, prepared.dev, fz.labels, cfg.train.eval_batch_size, task=task,
                                featurized=fz)  # the pruned model's own score (its parent's is not)
        log.info(f"recovering the pruned model: {recover_epochs} epoch(s) of {len(prepared.train):,} examples")
        result = train_model(cfg, prepared, run.model, scratch / "training", progress)
        with derived_run(pruned, out) as final:
            files = RunFiles(final)
            save_weights(run.model, files.weights, everything=True)
            write_json(files.eval, {"dev": result.dev, "test": result.test,
                                    "weights": f"pruned, then fine-tuned {recover_epochs} epoch(s)"})
            meta = read_meta(final)
            meta["recovered"] = {"epochs": recover_epochs, "overrides": list(overrides), "metric": cfg.train.metric,
                                 "dev_before": before, "dev_after": result.dev}
            write_json(files.meta, meta)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out

