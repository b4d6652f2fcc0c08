"""``attnkit tune``: hyperparameter search on Optuna over a config's ``tune:`` section.

The search space is a mapping from dotted config paths to a distribution::

    tune:
      train.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}
      model.encoder.hidden: {choice: [64, 128, 256]}
      train.optimizer.weight_decay: {uniform: [0.0, 0.1]}
      model.embedding.dim: {int: [32, 128]}

Each trial trains the config with the sampled values (TPE sampler), reports its dev metric
after every epoch and is pruned when it falls behind the median of earlier trials at the same
epoch. The study lives in SQLite (``--study FILE``): a killed search resumes where it stopped
(a trial killed mid-way is marked failed by its missing heartbeat and tried again), and
several processes given the same file work on one study; ``--trials`` counts finished trials
of the whole study. At the end: a table of the trials, ``OUT/trials.csv`` and the best
values as a config ready to train, ``OUT/best.yaml``."""
from __future__ import annotations

import copy
import csv
import io
import json
import logging
import os
from pathlib import Path

import yaml

from ..config import apply_overrides, load_yaml
from ..errors import ConfigError
from ..files import write_text
from ..registry import Registry
from ..tasks import get_task
from .training import resolve_config, train

log = logging.getLogger("attnkit")
DISTRIBUTIONS: Registry = Registry("search distribution")


@DISTRIBUTIONS.register("log_uniform")
def _log_uniform(trial, name, args):
    return trial.suggest_float(name, float(args[0]), float(args[1]), log=True)


@DISTRIBUTIONS.register("uniform")
def _uniform(trial, name, args):
    return trial.suggest_float(name, float(args[0]), float(args[1]))


@DISTRIBUTIONS.register("int")
def _int(trial, name, args):
    return trial.suggest_int(name, int(args[0]), int(args[1]))


@DISTRIBUTIONS.register("choice")
def _choice(trial, name, args):
    return trial.suggest_categorical(name, list(args))


def read_space(raw: dict, where: str = "tune") -> dict[str, tuple[str, list]]:
    """The ``tune:`` section checked: ``{path: (distribution, arguments)}``. Paths must be
    keys the config accepts (checked when the space is used), ranges low < high (> 0 for
    ``log_uniform``), choices a non-empty list."""
    space = raw.get("tune")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: the config needs a tune: section mapping config paths to distributions, "
                          f"e.g. tune: {{train.optimizer.lr: {{log_uniform: [1.0e-4, 1.0e-2]}}}}")
    out = {}
    for path, spec in space.items():
        at = f"{where}.{path}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(f"{at}: give one distribution ({', '.join(DISTRIBUTIONS.names())}), e.g. "
                              f"{{log_uniform: [1.0e-4, 1.0e-2]}}")
        (kind, args), = spec.items()
        DISTRIBUTIONS.get(kind, at)
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{at}.{kind}: give a list ({'choices' if kind == 'choice' else '[low, high]'})")
        if kind != "choice":
            if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) \
                    or not args[0] < args[1]:
                raise ConfigError(f"{at}.{kind}: {args!r} is not [low, high] with low < high")
            if kind == "log_uniform" and args[0] <= 0:
                raise ConfigError(f"{at}.log_uniform: {args!r}: a log scale needs low > 0")
        out[str(path)] = (kind, args)
    return out


def _overrides(params: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in params.items()]


def check_space(base: dict, space: dict) -> None:
    """Every path and every end of every range makes a valid config (a typo in a path is an
    error now, not after the first trial's training)."""
    for path, (kind, args) in space.items():
        for value in (args if kind == "choice" else args[:2]):
            try:
                resolve_config(base, _overrides({path: value}))
            except ConfigError as e:
                raise ConfigError(f"tune.{path}: {value!r} does not make a valid config: {e}") from None


def _open_study(optuna, path: Path, name: str, direction: str, seed: int, pruner):
    """Create or load the study in SQLite. Processes started together race to create the
    database's tables; the loser sees a constraint or lock error and tries again."""
    import time

    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(10):
        try:
            storage = optuna.storages.RDBStorage(
                f"sqlite:///{path.resolve()}", heartbeat_interval=30, grace_period=90,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=direction,
                                       sampler=optuna.samplers.TPESampler(seed=seed),
                                       pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3,
                                                                                    n_warmup_steps=1))
        except SQLAlchemyError as e:
            if attempt == 9:
                raise ConfigError(f"--study {path}: cannot open the study ({str(e).splitlines()[0]})") from None
            time.sleep(0.2 + 0.3 * attempt)


def tune(config: str | Path, trials: int = 20, study: str | Path | None = None, out: str | Path | None = None,
         seed: int = 0, timeout_s: float | None = None, pruner=None) -> dict:
    """Search the config's ``tune:`` space; returns ``{"best": {params, value, trial}, "trials":
    [...], "files": {...}}``. ``pruner``: an Optuna pruner (default: median after one epoch of
    three finished trials)."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use

    config = Path(config)
    raw = load_yaml(config)
    space = read_space(raw, f"{config}: tune")
    base = {k: v for k, v in raw.items() if k != "tune"}
    cfg = resolve_config(base)
    check_space(base, space)
    metric = cfg.train.metric
    direction = "minimize" if get_task(cfg.task).minimize(metric) else "maximize"
    out = Path(out) if out is not None else Path("runs") / f"{config.stem}-tune"
    out.mkdir(parents=True, exist_ok=True)
    study_path = Path(study) if study is not None else out / "study.sqlite"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = _open_study(optuna, study_path, config.stem, direction, seed, pruner)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial):
        params = {path: DISTRIBUTIONS.get(kind)(trial, path, args) for path, (kind, args) in space.items()}
        trial.set_user_attr("pid", os.getpid())
        run_dir = out / f"trial-{trial.number:03d}"

        def report(epoch: int, dev: dict) -> None:
            if metric in dev:
                trial.report(float(dev[metric]), epoch)
                if trial.should_prune():
                    log.info(f"trial {trial.number}: pruned after epoch {epoch} ({metric} {dev[metric]:.4f})")
                    raise optuna.TrialPruned()

        log.info(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in params.items())}")
        result = train(base, out=run_dir, overrides=_overrides(params), progress=False,
                       on_epoch=report)
        value = float(result.dev[metric])
        log.info(f"trial {trial.number}: {metric} {value:.4f}")
        return value

    done = sum(t.state in finished for t in st.trials)
    if done < trials:
        st.optimize(objective, n_trials=trials - done, timeout=timeout_s, catch=(),
                    callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    rows = [{"trial": t.number, "state": t.state.name.lower(), metric: t.value,
             "epochs": len(t.intermediate_values), **t.params} for t in st.trials]
    complete = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"tune: no trial of {study_path} finished (see the log above)")
    best = st.best_trial
    best_cfg = apply_overrides(copy.deepcopy(base), _overrides(best.params))
    files = {"study": str(study_path), "trials": str(out / "trials.csv"), "best": str(out / "best.yaml")}
    write_text(out / "best.yaml", f"# attnkit tune {config}: trial {best.number}, dev {metric} {best.value:.4f}\n"
               + yaml.safe_dump(best_cfg, sort_keys=False))
    buf = io.StringIO()
    names = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "trials.csv", buf.getvalue())
    return {"metric": metric, "direction": direction, "best": {"trial": best.number, "value": best.value,
                                                               "params": best.params},
            "trials": rows, "files": files}
