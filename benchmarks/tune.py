"""Hyperparameter search (issue "Training methods", item 4): ``attnkit tune`` on the SST-2
TextCNN (examples/sst2_textcnn.yaml) against the same config trained plainly.

SST-2 has no labelled test set, and a search that picks on dev and reports dev flatters
itself. So the official dev set is split in two (seeded): the search and every run's epoch
selection see half A only; both the plain and the tuned run are then evaluated on half B,
which nothing was chosen on.

    python benchmarks/tune.py [--trials 12]

Results in benchmarks/results/tune.json."""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
SPACE = {"train.optimizer.lr": {"log_uniform": [2.0e-4, 5.0e-3]},
         "model.embedding.dropout": {"uniform": [0.0, 0.5]},
         "model.head.dropout": {"uniform": [0.2, 0.7]},
         "model.encoder.channels": {"choice": [64, 128, 256]}}


def split_dev(out: Path) -> tuple[Path, Path]:
    """SST-2 dev in two seeded halves (header kept)."""
    lines = DEV.read_text(encoding="utf-8").splitlines(keepends=True)
    head, body = lines[0], lines[1:]
    random.Random(0).shuffle(body)
    a, b = out / "dev_a.tsv", out / "dev_b.tsv"
    a.write_text(head + "".join(body[: len(body) // 2]), encoding="utf-8")
    b.write_text(head + "".join(body[len(body) // 2:]), encoding="utf-8")
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("/tmp/attnkit-tune-bench"))
    args = ap.parse_args()
    import os

    import torch

    from attnkit.evaluate import evaluate_run
    from attnkit.run import train
    from attnkit.run.tune import tune

    os.chdir(ROOT)  # the example's data paths are relative to the repository
    torch.set_num_threads(2)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    dev_a, dev_b = split_dev(args.out)
    base = yaml.safe_load((ROOT / "examples" / "sst2_textcnn.yaml").read_text())
    base["data"]["dev"] = str(dev_a)
    base.setdefault("train", {})["report"] = False
    plain_cfg = args.out / "plain.yaml"
    plain_cfg.write_text(yaml.safe_dump(base, sort_keys=False))
    search_cfg = args.out / "search.yaml"
    search_cfg.write_text(yaml.safe_dump({**base, "tune": SPACE}, sort_keys=False))

    t0 = time.perf_counter()
    plain = train(plain_cfg, out=args.out / "plain", progress=False)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = tune(search_cfg, trials=args.trials, out=args.out / "search")
    tune_s = time.perf_counter() - t0
    best_dir = args.out / "search" / f"trial-{res['best']['trial']:03d}"
    held_plain = evaluate_run(args.out / "plain", dev_b)["accuracy"]
    held_tuned = evaluate_run(best_dir, dev_b)["accuracy"]
    states = [r["state"] for r in res["trials"]]
    print(f"plain: dev A {plain.dev['accuracy']:.4f}, dev B {held_plain:.4f} ({plain_s:.0f} s)")
    print(f"tuned: dev A {res['best']['value']:.4f}, dev B {held_tuned:.4f} ({tune_s:.0f} s, {len(states)} trials, "
          f"{states.count('pruned')} pruned); best {res['best']['params']}")
    rows = [
        row("plain", "dev_a_accuracy", round(plain.dev["accuracy"], 4), None, "higher"),
        row("plain", "dev_b_accuracy", round(held_plain, 4), None, "higher", wall_s=round(plain_s, 1)),
        row("tuned", "dev_a_accuracy", round(res["best"]["value"], 4), None, "higher", trial=res["best"]["trial"],
            params=res["best"]["params"]),
        row("tuned", "dev_b_accuracy", round(held_tuned, 4), round(held_plain, 4), "higher", wall_s=round(tune_s, 1),
            trials=len(states), pruned=states.count("pruned")),
        row("search", "trials", len(states), None, "higher", table=res["trials"]),
    ]
    notes = ["examples/sst2_textcnn.yaml, data.dev = half A of SST-2 dev (seeded split); search space: "
             + ", ".join(f"{k} {v}" for k, v in SPACE.items()),
             "dev_b: the other half, never used for a choice (the tuned row's target is the plain run's dev_b)",
             "TPE (seed 0), median pruning after epoch 1 once 3 trials finished"]
    print(f"wrote {write_results('tune', rows, notes)}")


if __name__ == "__main__":
    main()
