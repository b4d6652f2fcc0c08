"""Text-aware recommendation on MovieLens 100K (issue "Applications", part 2): attnkit's
attentive recommender (examples/movielens_recommender.yaml) against item popularity, biased
means, SVD and SVD++ (scikit-surprise), all in one run.

* Ratings: RMSE and MAE on the five official splits u1..u5 (train on uK.base, score uK.test;
  mean over the folds), and RMSE on cold items (test ratings of items with <= 5 ratings in
  uK.base). attnkit holds 5% of uK.base out as its dev set (epoch choice); the baselines
  train on all of uK.base.
* Ranking: leave-last-out. Each user's latest rating (by timestamp) is the test item, ranked
  among 100 items the user never rated (sampled uniformly, seeded; the same 100 for every
  method); HR@10 and NDCG@10. attnkit ranks by its ranking score (trained with BPR), the
  rating models by their predicted rating, popularity by the number of training ratings.
  attnkit's dev set is each user's second-latest rating; the baselines train on everything
  but the test items.

    python benchmarks/recommend.py [--folds 1 2 3 4 5] [--epochs N]

Results in benchmarks/results/recommend.json."""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
ML = ROOT.parent / "shared" / "data" / "movielens" / "ml-100k"
CONFIG = ROOT / "examples" / "movielens_recommender.yaml"
COLD = 5


def surprise_models() -> dict:
    """The scikit-surprise baselines with their default settings (as published)."""
    from surprise import SVD, BaselineOnly, SVDpp

    return {"biased means": lambda: BaselineOnly(verbose=False), "SVD": lambda: SVD(random_state=0),
            "SVD++": lambda: SVDpp(random_state=0, cache_ratings=True)}


def trainset(users, items, values):
    """A surprise trainset from parallel lists (through a temporary file: no pandas needed)."""
    import tempfile

    from surprise import Dataset, Reader

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.tsv"
        path.write_text("".join(f"{u}\t{i}\t{v}\n" for u, i, v in zip(users, items, values)), encoding="utf-8")
        data = Dataset.load_from_file(str(path), Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5)))
        return data.build_full_trainset()


REUSE = False  # --reuse: keep runs already trained in --work (their training time is in train_seconds.txt)


def train_attnkit(out: Path, overrides: list[str]) -> tuple[Path, float]:
    """Train the example config with ``overrides``; the run directory and the wall time."""
    from attnkit.run import train

    timing = out / "train_seconds.txt"
    if REUSE and (out / "eval.json").is_file() and timing.is_file():
        return out, float(timing.read_text())
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    train(str(CONFIG), out=out, overrides=overrides, progress=False)
    seconds = time.perf_counter() - t
    timing.write_text(f"{seconds:.1f}\n")
    return out, seconds


def attnkit_predictions(run_dir: Path, path: Path) -> list[float]:
    """The run's predicted rating of every rating in ``path``, in file order."""
    from attnkit.run import load_run
    from attnkit.tasks import predict_data

    run = load_run(run_dir)
    data = run.task.encode(run.featurized, run.task.read_file(run.cfg, path))
    return [p[0] for p in predict_data(run.model, run.task, data)[0]]


def rating_fold(k: int, work: Path, extra: list[str]) -> dict:
    """RMSE / MAE / cold RMSE of every method on split uK."""
    import json

    from attnkit.data.ratings import read_ratings

    base, test = read_ratings(ML / f"u{k}.base"), read_ratings(ML / f"u{k}.test")
    counts: dict[str, int] = {}
    for i in base.items:
        counts[i] = counts.get(i, 0) + 1
    gold = np.asarray(test.values)
    cold = np.asarray([counts.get(i, 0) <= COLD for i in test.items])
    out = {}

    def scores(pred, seconds):
        err = np.asarray(pred) - gold
        return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
                "cold_rmse": float(np.sqrt(np.mean(err[cold] ** 2))), "seconds": round(seconds, 1)}

    t = time.perf_counter()
    sums: dict[str, list[float]] = {}
    for i, v in zip(base.items, base.values):
        sums.setdefault(i, []).append(v)
    mean = float(np.mean(base.values))
    item_mean = {i: float(np.mean(v)) for i, v in sums.items()}
    out["popularity (item mean)"] = scores([item_mean.get(i, mean) for i in test.items], time.perf_counter() - t)
    ts = trainset(base.users, base.items, base.values)
    for name, make in surprise_models().items():
        t = time.perf_counter()
        algo = make()
        algo.fit(ts)
        pred = [algo.predict(u, i).est for u, i in zip(test.users, test.items)]
        out[name] = scores(pred, time.perf_counter() - t)
    run, seconds = train_attnkit(work / f"u{k}", [f"data.train={ML / f'u{k}.base'}", f"data.test={ML / f'u{k}.test'}",
                                                  *extra])
    ev = json.loads((run / "eval.json").read_text())["test"]
    out["attnkit"] = scores(attnkit_predictions(run, ML / f"u{k}.test"), seconds)  # the same cold items as the others
    assert abs(out["attnkit"]["rmse"] - ev["rmse"]) < 1e-4, (out["attnkit"], ev)  # the run's own test score
    out["attnkit"]["n_cold"] = int(cold.sum())
    print(f"u{k}: " + ", ".join(f"{m} {s['rmse']:.4f}" for m, s in out.items()), flush=True)
    return out


def ranking(work: Path, extra: list[str]) -> dict:
    """HR@10 / NDCG@10 of every method, leave-last-out with the task's 100 sampled negatives."""
    from attnkit.run import load_run
    from attnkit.tasks import predict_data
    from attnkit.tasks.recommendation import ranking_metrics

    run_dir, seconds = train_attnkit(work / "last", [f"data.train={ML / 'u.data'}", "data.test=null",
                                                     "data.holdout=last", *extra])
    run = load_run(run_dir)
    task, fz = run.task, run.featurized
    train, dev, test = task.read_splits(run.cfg)
    data = task.encode(fz, test)
    preds, _, _ = predict_data(run.model, task, data)
    out = {"attnkit": {**ranking_metrics([p[1] for p in preds]), "seconds": round(seconds, 1)}}
    cat, known = fz.vocabs["items.json"], fz.vocabs["known_ratings.json"]
    users = [known.users[u - 1] for u in data.users.tolist()]
    cands = np.concatenate([data.items[:, None], data.fixed], 1)  # catalog indices, the test item first
    ids = [[cat.ids[c - 1] for c in row] for row in cands.tolist()]
    seen = train + dev  # everything but the test items
    counts: dict[str, int] = {}
    for i in seen.items:
        counts[i] = counts.get(i, 0) + 1

    def positions(score_rows):
        s = np.asarray(score_rows, dtype=np.float64)
        return ((s[:, 1:] > s[:, :1]).sum(1)).tolist()

    out["popularity"] = ranking_metrics(positions([[counts.get(i, 0) for i in row] for row in ids]))
    ts = trainset(seen.users, seen.items, seen.values)
    for name, make in surprise_models().items():
        t = time.perf_counter()
        algo = make()
        algo.fit(ts)
        out[name] = {**ranking_metrics(positions([[algo.predict(u, i).est for i in row] for u, row in zip(users, ids)])),
                     "seconds": round(time.perf_counter() - t, 1)}
    print("leave-last-out: " + ", ".join(f"{m} HR@10 {s['hr@10']:.4f}" for m, s in out.items()), flush=True)
    out["protocol"] = (f"leave-last-out: {len(users)} users, each user's latest rating ranked among 100 items the user "
                       f"never rated (sampled uniformly, seed {run.cfg.train.seed}); same candidates for every method")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--no-ranking", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="config overrides for attnkit's runs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-recommend-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep attnkit runs already trained in --work (the "
                                                          "baselines are always trained again)")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    if not ML.is_dir():
        sys.exit(f"MovieLens 100K not found at {ML}")
    folds = {k: rating_fold(k, args.work, args.set) for k in args.folds}
    methods = list(next(iter(folds.values())))
    mean = {m: {key: float(np.mean([f[m][key] for f in folds.values()])) for key in ("rmse", "mae", "cold_rmse")}
            for m in methods}
    rows = []
    for m in methods:
        rows.append(row(f"{m}: RMSE, mean of {len(folds)} official splits", "rmse", round(mean[m]["rmse"], 4),
                        0.90 if m == "attnkit" else None, "lower", mae=round(mean[m]["mae"], 4),
                        per_fold={f"u{k}": round(f[m]["rmse"], 4) for k, f in folds.items()},
                        seconds_per_fold=[f[m]["seconds"] for f in folds.values()]))
    svd_cold = mean["SVD"]["cold_rmse"]
    for m in methods:
        rows.append(row(f"{m}: RMSE on cold items (<= {COLD} training ratings)", "cold_rmse",
                        round(mean[m]["cold_rmse"], 4), round(svd_cold - 0.03, 4) if m == "attnkit" else None, "lower"))
    notes = [f"cold test ratings per fold (items with <= {COLD} ratings in uK.base, the same for every method): "
             f"{[f['attnkit']['n_cold'] for f in folds.values()]}",
             "attnkit trains on 95% of uK.base (5% is its dev set for the epoch choice: read as history, never a training target); the baselines train on all of it"]
    if args.reuse:
        notes.append("--reuse: attnkit's runs were trained by an earlier `python benchmarks/recommend.py` in --work "
                     "(training times measured then, kept in train_seconds.txt) and scored again here; every "
                     "baseline was trained again in this run")
    slowest = max(f["attnkit"]["seconds"] for f in folds.values())
    rows.append(row("attnkit: slowest training (one fold)", "seconds", slowest, 900, "lower"))
    if not args.no_ranking:
        rk = ranking(args.work, args.set)
        best = max((v["hr@10"], m) for m, v in rk.items() if m not in ("attnkit", "protocol"))
        for m, v in rk.items():
            if m == "protocol":
                continue
            rows.append(row(f"{m}: HR@10, leave-last-out, 100 sampled negatives", "hr@10", round(v["hr@10"], 4),
                            round(1.1 * best[0], 4) if m == "attnkit" else None, "higher",
                            ndcg_at_10=round(v["ndcg@10"], 4)))
        notes.append(rk["protocol"])
        notes.append(f"best baseline HR@10: {best[1]} {best[0]:.4f}; target 1.1x")
        rows.append(row("attnkit: training time, leave-last-out run", "seconds", rk["attnkit"]["seconds"], 900, "lower"))
    path = write_results("recommend", rows, notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
