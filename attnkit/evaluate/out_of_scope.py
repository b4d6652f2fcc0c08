"""Out-of-scope detection for intent classifiers: a confidence threshold tuned on dev.

A classifier trained with an out-of-scope class (``data.out_of_scope``, CLINC150's ``oos``)
still sends most out-of-scope queries to some intent, with high confidence. The usual remedy
(Hendrycks & Gimpel 2017) is to also call a query out of scope when the model's confidence is
below a threshold. Three confidence scores are computed from the class probabilities and
compared on dev (area under the in-scope-accuracy vs out-of-scope-recall curve):

* ``msp``: the largest class probability;
* ``margin``: the largest minus the second largest;
* ``not_oos``: one minus the out-of-scope class's probability.

The threshold is chosen on dev by ``criterion``: ``drop:D`` (the default, ``drop:0.02``)
takes the highest out-of-scope recall that costs at most ``D`` of dev in-scope accuracy
against no threshold; a number ``a`` the highest recall whose in-scope accuracy stays >= ``a``;
``balanced`` maximises in-scope accuracy + out-of-scope recall. Measured on CLINC150
(``benchmarks/router_oos.py``), ``balanced`` gives up 7 points of in-scope accuracy for
recall, more than a router should by default. It is saved in ``RUN/out_of_scope.json`` with both curves, and the
router (``attnkit serve --router``) hands queries below it to a person."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..files import write_json
from ..registry import Registry
from ..rundir import load_run
from ..tasks import get_task, predict_data

CONFIDENCE: Registry = Registry("confidence score")
CONFIDENCE.register("msp")(lambda p, k: p.max(1))
CONFIDENCE.register("margin")(lambda p, k: np.diff(np.sort(p, 1)[:, -2:], axis=1)[:, 0])
CONFIDENCE.register("not_oos")(lambda p, k: 1.0 - p[:, k])


def curve(probs: np.ndarray, gold: np.ndarray, oos: int, score: str) -> np.ndarray:
    """Rows ``(threshold, in-scope accuracy, out-of-scope recall)`` for every distinct
    threshold: a query is out of scope when the model says so or its confidence < threshold."""
    conf = CONFIDENCE.get(score)(probs, oos)
    pred = probs.argmax(1)
    inside, outside = gold != oos, gold == oos
    thresholds = np.concatenate([[0.0], np.unique(conf), [float(conf.max()) + 1e-6]])  # last: reject all
    rows = []
    for t in thresholds:
        rejected = (pred == oos) | (conf < t)
        acc = float(((pred == gold) & ~rejected)[inside].mean()) if inside.any() else 0.0
        rec = float(rejected[outside].mean()) if outside.any() else 0.0
        rows.append((float(t), acc, rec))
    return np.array(rows)


def area(rows: np.ndarray) -> float:
    """Area under in-scope accuracy as a function of out-of-scope recall (1 is perfect)."""
    order = np.argsort(rows[:, 2], kind="stable")
    x, y = rows[order, 2], rows[order, 1]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


DEFAULT_CRITERION = "drop:0.02"


def pick(rows: np.ndarray, criterion: str | float = DEFAULT_CRITERION) -> np.ndarray:
    """The dev row the criterion picks (see the module docstring); never the last row, which
    hands every query off."""
    rows = rows[:-1]
    if criterion == "balanced":
        return rows[int(np.argmax(rows[:, 1] + rows[:, 2]))]
    if isinstance(criterion, str) and criterion.startswith("drop:"):
        try:
            drop = float(criterion[5:])
        except ValueError:
            raise ConfigError(f"criterion {criterion!r}: drop:D needs a number D (e.g. drop:0.02)") from None
        floor, what = rows[0, 1] - drop, f"--max-accuracy-drop {drop}"
    else:
        floor, what = float(criterion), f"--min-in-scope-accuracy {criterion}"
    ok = rows[rows[:, 1] >= floor - 1e-12]
    if not len(ok):
        raise ConfigError(f"{what}: no threshold keeps dev in-scope accuracy that high "
                          f"(at most {rows[:, 1].max():.4f})")
    return ok[int(np.argmax(ok[:, 2]))]


def at_threshold(rows: np.ndarray, t: float) -> dict:
    """Metrics at threshold ``t`` on a curve of other data: rejecting ``conf < t`` rejects what
    the curve's smallest threshold >= ``t`` rejects (every curve threshold is a confidence)."""
    i = min(int(np.searchsorted(rows[:, 0], t, side="left")), len(rows) - 1)
    return {"in_scope_accuracy": float(rows[i, 1]), "oos_recall": float(rows[i, 2])}


def class_probabilities(run, path) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``[N, C]`` and gold ids of a labelled file, read as the run reads it."""
    task = get_task(run.cfg.task)
    data = task.encode(run.featurized, task.read_file(run.cfg, path))
    preds, gold, _ = predict_data(run.model, task, data)
    return torch.stack(preds).float().numpy(), np.asarray(gold)


def tune_out_of_scope(run_dir: str | Path, dev: str | Path | None = None, test: str | Path | None = None,
                      criterion: str | float = DEFAULT_CRITERION, score: str | None = None) -> dict:
    """Tune the out-of-scope threshold of a run on dev (``dev``: the run's ``data.dev``
    unless given), report it on ``test`` (the run's ``data.test`` if it has one), save
    ``RUN/out_of_scope.json`` and return it. ``score``: a :data:`CONFIDENCE` name (default:
    the one with the largest dev area)."""
    run = load_run(run_dir)
    label = getattr(run.cfg.data, "out_of_scope", None)
    labels = list(run.meta.get("labels") or [])
    if get_task(run.cfg.task).target != "labels" or not labels:
        raise ConfigError(f"tune-oos: {run_dir} is a {run.cfg.task} run; only single-label classifiers have an "
                          f"out-of-scope threshold")
    if label is None or label not in labels:
        raise ConfigError(f"tune-oos: {run_dir} has no out-of-scope label (train it with data.out_of_scope: NAME, "
                          f"e.g. CLINC150's oos)")
    if score is not None:
        CONFIDENCE.get(score, "--score")
    dev = dev or run.cfg.data.dev
    if dev is None:
        raise ConfigError(f"tune-oos: {run_dir} has no dev file in its config: give --dev FILE")
    test = test or run.cfg.data.test
    k = labels.index(label)
    p_dev, g_dev = class_probabilities(run, dev)
    if not (g_dev == k).any() or (g_dev == k).all():
        raise ConfigError(f"tune-oos: {dev} needs both out-of-scope ({label!r}) and in-scope examples")
    p_test, g_test = class_probabilities(run, test) if test else (None, None)
    out = {"label": label, **choose(p_dev, g_dev, k, criterion, score, p_test, g_test), "dev_file": str(dev)}
    if test:
        out["test_file"] = str(test)
    write_json(run.files.out_of_scope, out)
    return out


def choose(p_dev: np.ndarray, g_dev: np.ndarray, k: int, criterion: str | float = DEFAULT_CRITERION,
           score: str | None = None, p_test: np.ndarray | None = None, g_test: np.ndarray | None = None) -> dict:
    """The threshold from dev probabilities ``[N, C]`` and gold ids (out-of-scope id ``k``):
    ``score`` (default: the largest dev area), ``threshold``, dev (and test) metrics at it and
    untuned, the dev areas of every score, the curves (thinned)."""
    curves = {name: curve(p_dev, g_dev, k, name) for name in CONFIDENCE.names()}
    areas = {name: round(area(c), 4) for name, c in curves.items()}
    score = score or max(areas, key=areas.get)
    chosen = pick(curves[score], criterion)
    out = {"score": score, "criterion": criterion, "threshold": float(chosen[0]),
           "dev": {"in_scope_accuracy": float(chosen[1]), "oos_recall": float(chosen[2]),
                   "untuned": at_threshold(curves[score], 0.0)},
           "dev_area_by_score": areas, "curves": {"dev": _thin(curves[score])}}
    if p_test is not None:
        test_curve = curve(p_test, g_test, k, score)
        out["test"] = {**at_threshold(test_curve, out["threshold"]), "untuned": at_threshold(test_curve, 0.0)}
        out["curves"]["test"] = _thin(test_curve)
    return out


def _thin(rows: np.ndarray, n: int = 200) -> list[list[float]]:
    """At most ``n`` curve rows (evenly spaced), rounded, for the JSON file and the report."""
    idx = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    return [[round(float(v), 5) for v in rows[i]] for i in idx]
