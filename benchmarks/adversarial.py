"""Adversarial training (issue "Training methods", item 2): the SST-2 BiLSTM + attention
classifier (examples/sst2_bilstm_attention.yaml) trained plainly and with FGM on its word
embeddings, each scored on SST-2 dev clean and under a PGD attack on the embeddings.

    python benchmarks/adversarial.py [--epsilon 1.0] [--method fgm] [--attack-epsilon 1.0]

The attack: 10 PGD steps (step 2.5 x epsilon / 10), each example's perturbation within an L2
ball of the stated radius over all its word vectors; the model in eval mode. Results in
benchmarks/results/adversarial.json."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, timed_train, write_results

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "sst2_bilstm_attention.yaml"
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"


def train_run(out: Path, overrides: list[str], reuse: bool = False) -> float:
    """Train the example with ``overrides``; the wall time (with ``reuse``, a run already in
    ``out`` is kept and its recorded time returned)."""
    return timed_train(str(CONFIG), out, overrides, reuse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="fgm")
    ap.add_argument("--epsilon", type=float, nargs="+", default=[1.0], help="training perturbation radii (one run each)")
    ap.add_argument("--attack-epsilon", type=float, default=1.0)
    ap.add_argument("--attack-steps", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-adversarial-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep runs already trained in --work")
    args = ap.parse_args()
    from attnkit.run import evaluate

    runs = {"plain": []}
    for eps in args.epsilon:
        runs[f"{args.method} eps {eps:g}"] = [f"train.adversarial.method={args.method}",
                                              f"train.adversarial.epsilon={eps}"]
    results = {}
    for name, overrides in runs.items():
        out = args.work / ("plain" if name == "plain" else name.replace(" ", "-"))
        seconds = train_run(out, overrides, args.reuse)
        clean = json.loads((out / "eval.json").read_text())["dev"]["accuracy"]
        t = time.perf_counter()
        attacked = evaluate(out, DEV, attack=(args.attack_epsilon, args.attack_steps))["accuracy"]
        results[name] = {"clean": clean, "attacked": attacked, "seconds": round(seconds, 1),
                         "attack_seconds": round(time.perf_counter() - t, 1)}
        print(f"{name}: clean {clean:.4f}, attacked {attacked:.4f} ({seconds:.0f} s)", flush=True)
    plain = results["plain"]
    rows = [
        row("plain: SST-2 dev accuracy, clean", "accuracy", round(plain["clean"], 4), None, "higher",
            seconds=plain["seconds"]),
        row(f"plain: SST-2 dev accuracy under PGD (eps {args.attack_epsilon:g})", "accuracy",
            round(plain["attacked"], 4), None, "higher"),
    ]
    for name, adv in results.items():
        if name == "plain":
            continue
        rows += [
            row(f"{name}: SST-2 dev accuracy, clean (target: within 0.5 point of plain)", "accuracy",
                round(adv["clean"], 4), round(plain["clean"] - 0.005, 4), "higher", seconds=adv["seconds"]),
            row(f"{name}: SST-2 dev accuracy under PGD (eps {args.attack_epsilon:g}; target: above plain)",
                "accuracy", round(adv["attacked"], 4), round(plain["attacked"] + 1e-4, 4), "higher"),
        ]
    notes = [f"attack: {args.attack_steps} PGD steps on the word embeddings, L2 radius {args.attack_epsilon:g} per "
             "example over all its word vectors, model in eval mode",
             "MiniLM LoRA was not measured in this run (its fine-tuning takes 15 min plainly, about twice that with "
             "FGM)"]
    if args.reuse:
        notes.append("--reuse: runs already in --work were kept (trained by an earlier run of this script on this "
                     "machine, their training time recorded then in train_seconds.txt); every run was scored again")
    print(f"wrote {write_results('adversarial', rows, notes)}")


if __name__ == "__main__":
    main()
