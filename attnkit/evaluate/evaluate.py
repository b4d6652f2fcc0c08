"""Scoring a model: on a data set it was prepared for (the trainer's dev evaluation), or a
trained run on a labelled file (``attnkit evaluate RUN --data FILE``)."""
from __future__ import annotations

from pathlib import Path

from ..deploy import attach_engine, engine_name
from ..errors import ConfigError
from ..files import write_json
from ..rundir import load_run
from ..tasks import TASKS, Featurized, Task, get_task, predict_data
from ..train.precision import batch_size_text, inference_precision, model_work


def evaluate_model(model, data, label_names: list[str], batch_size: int = 256, out_of_scope: str | None = None,
                   *, task: Task | None = None, featurized: Featurized | None = None) -> dict:
    """Loss and task metrics of ``model`` on ``data``.

    ``task``/``featurized``: the run's task and featurizer (what training passes). Without
    them the task is the registered one whose models predict ``model.target`` (class ids:
    classification metrics; tags: entity F1) with ``label_names`` and ``out_of_scope``."""
    if task is None:
        task = next(TASKS.get(n) for n in TASKS.names() if TASKS.get(n).target == model.target)
    if featurized is None:
        from types import SimpleNamespace

        cfg = SimpleNamespace(data=SimpleNamespace(out_of_scope=out_of_scope))
        featurized = Featurized(cfg, {}, list(label_names), {})
    preds, gold, loss = predict_data(model, task, data, batch_size)
    return {"loss": loss, **task.score(preds, gold, featurized)}


def evaluate_run(run_dir: str | Path, data_file: str | Path, batch_size: int = 256,
                 data_options: dict | None = None, engine: str | None = None, precision: str = "fp32",
                 attack: tuple[float, int] | None = None) -> dict:
    """Metrics of a trained run on labelled data, read with the run's data options (``data_options``:
    ``data:`` keys to change for this file, e.g. ``{"format": "csv", "encoding": "cp1252"}``);
    also written to ``RUN/eval-<file>.json``. ``engine``: as :func:`attnkit.deploy.attach_engine`;
    ``precision``: fp32, bf16 or auto (:mod:`attnkit.train.precision`); ``attack``: ``(epsilon,
    steps)`` scores it under a PGD attack on the token embeddings instead (torch engine, fp32;
    written to ``RUN/eval-<file>-pgd<epsilon>.json``)."""
    run = attach_engine(load_run(run_dir), engine)
    task = get_task(run.cfg.task)
    fz = run.featurized
    data = task.encode(fz, task.read_file(run.cfg.with_data(data_options), data_file))
    if attack is not None:
        if engine_name(run) != "torch":
            raise ConfigError("evaluate --attack: the attack needs gradients: use --engine torch")
        from .robustness import attacked_metrics

        metrics = attacked_metrics(run.model, task, data, fz, *attack)
        path = run.files.eval_of(data_file)
        write_json(path.with_name(f"{path.stem}-pgd{attack[0]:g}.json"), metrics)
        return metrics
    first = list(range(min(batch_size, len(data))))  # what `auto` times
    batch = data.collate(first)
    work = model_work(run.model, lambda: run.model(batch), f"evaluate batch {batch_size_text(batch)}")
    with inference_precision(precision, engine=engine_name(run), work=work).autocast(run.model):
        metrics = evaluate_model(run.model, data, fz.labels, batch_size, task=task, featurized=fz)
    write_json(run.files.eval_of(data_file), metrics)
    return metrics
