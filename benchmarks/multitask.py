"""Multi-task training (issue "Training methods", item 3): SST-2 and Financial PhraseBank
sentiment sharing one embedding and BiLSTM (examples/multitask_sentiment.yaml), against each
task trained alone with the very same model and training options (the single-task configs are
the multi-task run's own per-task configs, ``attnkit.tasks.multitask.part_configs``).

    python benchmarks/multitask.py [--sampling proportional temperature] [--work DIR] [--reuse]

Same budget: every run trains 4 epochs; with ``proportional`` sampling each task sees each of
its examples 4 times in the multi-task run too, as alone. ``temperature`` (T = 2) draws the
small task more often within the same number of steps. The single-task runs pick their best
epoch by their own accuracy, the multi-task run by the mean of both; each task is scored on its
dev split (SST-2's test set has no labels) and the PhraseBank also on its held-out test split."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, timed_train, write_results

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "multitask_sentiment.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sampling", nargs="+", default=["proportional", "temperature"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-multitask-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep runs already trained in --work")
    args = ap.parse_args()
    from attnkit.config import to_dict
    from attnkit.run.training import resolve_config
    from attnkit.tasks.multitask import part_configs

    os.chdir(ROOT)
    parts = part_configs(resolve_config(CONFIG))
    single = {}
    for name, cfg in parts.items():
        out = args.work / f"single-{name}"
        seconds = timed_train(to_dict(cfg), out, reuse=args.reuse)
        single[name] = {**json.loads((out / "eval.json").read_text()), "seconds": seconds}
        print(f"single {name}: dev {single[name]['dev']['accuracy']:.4f} ({seconds / 60:.1f} min)", flush=True)
    rows = []
    for sampling in args.sampling:
        out = args.work / f"multi-{sampling}"
        seconds = timed_train(str(CONFIG), out, [f"multitask.sampling={sampling}"], args.reuse)
        print(f"multi-task ({sampling}): {seconds / 60:.1f} min", flush=True)
        for name in parts:
            ev = json.loads((out / "tasks" / name / "eval.json").read_text())
            alone = single[name]
            for split in ("dev", "test"):
                if not ev.get(split) or not alone.get(split):
                    continue
                rows.append(row(f"{name} {split} accuracy: multi-task ({sampling}) vs alone", "accuracy",
                                round(ev[split]["accuracy"], 4), None, "higher",
                                alone=round(alone[split]["accuracy"], 4),
                                difference=round(ev[split]["accuracy"] - alone[split]["accuracy"], 4),
                                macro_f1=round(ev[split]["macro_f1"], 4),
                                alone_macro_f1=round(alone[split]["macro_f1"], 4)))
        rows.append(row(f"multi-task ({sampling}) training time vs the single-task runs together", "minutes",
                        round(seconds / 60, 1), None, "lower", unit="min",
                        alone_min=round(sum(s["seconds"] for s in single.values()) / 60, 1)))
    notes = ["same model and training options for every run (the multi-task run's per-task configs); 4 epochs "
             "each; proportional sampling gives each task the same examples as alone",
             "no target in the issue: the rows report each task's score multi-task vs alone"]
    if args.reuse:
        notes.append("--reuse: runs already in --work were kept (their training time recorded when they trained)")
    print(f"wrote {write_results('multitask', rows, notes)}")


if __name__ == "__main__":
    main()
