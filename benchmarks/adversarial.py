"""Adversarial training (issue "Training methods", item 2): SST-2 classifiers trained plainly
and with FGM on their token embeddings, each scored on SST-2 dev clean and under a PGD attack
on the embeddings. Models: the BiLSTM + attention from scratch (examples/sst2_bilstm_attention.yaml,
word vectors) and MiniLM with LoRA (examples/sst2_minilm_lora.yaml, word-piece embeddings).

    python benchmarks/adversarial.py [--models bilstm lora] [--epsilon 1.0 0.3] [--lora-epsilon 0.3]
                                     [--attack-epsilon 1.0 0.3] [--reuse]

The attack: 10 PGD steps (step 2.5 x epsilon / 10), each example's perturbation within an L2
ball of the stated radius over all its token embeddings; the model in eval mode. Results in
benchmarks/results/adversarial.json."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, row, timed_train, write_results

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"bilstm": ROOT / "examples" / "sst2_bilstm_attention.yaml",
           "lora": ROOT / "examples" / "sst2_minilm_lora.yaml"}
LABELS = {"bilstm": "BiLSTM + attention", "lora": "MiniLM LoRA"}
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["bilstm", "lora"])
    ap.add_argument("--method", default="fgm")
    ap.add_argument("--epsilon", type=float, nargs="+", default=[1.0, 0.3], help="training perturbation radii "
                                                                               "(one run each per model)")
    ap.add_argument("--lora-epsilon", type=float, nargs="+", help="training radii for MiniLM LoRA (default: "
                                                                      "--epsilon); each of its runs takes ~30 min")
    ap.add_argument("--attack-epsilon", type=float, nargs="+", default=[1.0, 0.3], help="attack radii")
    ap.add_argument("--attack-steps", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-adversarial-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep runs already trained in --work")
    args = ap.parse_args()
    from attnkit.run import evaluate

    rows = []
    for model in args.models:
        runs = {"plain": []}
        for eps in (args.lora_epsilon or args.epsilon) if model == "lora" else args.epsilon:
            runs[f"{args.method} eps {eps:g}"] = [f"train.adversarial.method={args.method}",
                                                  f"train.adversarial.epsilon={eps}"]
        results = {}
        for name, overrides in runs.items():
            # the BiLSTM's runs keep the folder names of the first version of this script (--reuse)
            folder = "plain" if name == "plain" else name.replace(" ", "-")
            out = args.work / (folder if model == "bilstm" else f"{model}-{folder}")
            seconds = timed_train(str(CONFIGS[model]), out, overrides, args.reuse)
            clean = json.loads((out / "eval.json").read_text())["dev"]["accuracy"]
            attacked = {}
            for radius in args.attack_epsilon:
                t = time.perf_counter()
                attacked[radius] = evaluate(out, DEV, attack=(radius, args.attack_steps))["accuracy"]
                print(f"{LABELS[model]}, {name}: PGD {radius:g} {attacked[radius]:.4f} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
            results[name] = {"clean": clean, "attacked": attacked, "seconds": round(seconds, 1)}
            print(f"{LABELS[model]}, {name}: clean {clean:.4f} ({seconds:.0f} s)", flush=True)
        plain = results["plain"]
        label = LABELS[model]
        rows.append(row(f"{label}, plain: SST-2 dev accuracy, clean", "accuracy", round(plain["clean"], 4), None,
                        "higher", seconds=plain["seconds"]))
        rows += [row(f"{label}, plain: SST-2 dev accuracy under PGD (eps {r:g})", "accuracy", round(a, 4), None,
                     "higher") for r, a in plain["attacked"].items()]
        for name, adv in results.items():
            if name == "plain":
                continue
            rows.append(row(f"{label}, {name}: SST-2 dev accuracy, clean (target: within 0.5 point of plain)",
                            "accuracy", round(adv["clean"], 4), round(plain["clean"] - 0.005, 4), "higher",
                            seconds=adv["seconds"]))
            rows += [row(f"{label}, {name}: SST-2 dev accuracy under PGD (eps {r:g}; target: above plain)",
                         "accuracy", round(a, 4), round(plain["attacked"][r] + 1e-4, 4), "higher")
                     for r, a in adv["attacked"].items()]
    notes = [f"attack: {args.attack_steps} PGD steps on the token embeddings (word vectors for the BiLSTM, "
             "MiniLM's word-piece embeddings before its position embeddings and LayerNorm), L2 radius per example "
             "over all its token vectors, model in eval mode",
             "scale: the BiLSTM's trained 300-d word vectors and MiniLM's 384-d word pieces (mean norm 1.07 per "
             "piece) differ, so one radius is not the same strength on both",
             "the target pairs each adversarially trained run with the plain run of the same model and recipe"]
    if args.reuse:
        notes.append("--reuse: runs already in --work were kept (trained by an earlier run of this script on this "
                     "machine, their training time recorded then in train_seconds.txt); every run was scored again")
    left = [m for m in CONFIGS if m not in args.models]
    if left and (RESULTS / "adversarial.json").is_file():  # a run of some models keeps the others' rows
        old = json.loads((RESULTS / "adversarial.json").read_text())
        kept = [dict(r, from_run=r.get("from_run", old["date"])) for r in old["rows"]
                if any(r["name"].startswith(LABELS[m] + ",") for m in left)]
        rows += kept
        if kept:
            notes.append(f"rows of {', '.join(LABELS[m] for m in left)} kept from the run of {old['date']} "
                         "(marked from_run)")
    print(f"wrote {write_results('adversarial', rows, notes)}")


if __name__ == "__main__":
    main()
