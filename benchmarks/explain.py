"""Faithfulness of explanations: delete the top-k words by each method and measure how much
the predicted class's probability drops (higher = the method found what the model used).

On SST-2 dev, for the BiLSTM + additive-attention model and the fine-tuned MiniLM, methods
attention / saliency (gradient x input) / ig (integrated gradients) / random (mean of
``--random-orders`` seeded orders); k = 1, 3, 5. Words are deleted from the input (for MiniLM
all the word pieces of a word; [CLS]/[SEP] stay); at most n - 1 of an n-word sentence are
deleted so that something remains. Scores are signed (evidence for the predicted class) and
words are deleted from the highest score down.

    python benchmarks/explain.py                  # both models (trains missing runs first)
    python benchmarks/explain.py --limit 100      # a quick look

Writes benchmarks/results/explain.json."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 3, 5)
METHODS = ("attention", "saliency", "ig")


def ensure_run(run_dir: Path, config: Path) -> Path:
    """The run directory, trained from ``config`` first when it is not there."""
    if (run_dir / "model.safetensors").is_file():
        return run_dir
    from attnkit.run import train

    print(f"training {config.name} into {run_dir} (not found)", file=sys.stderr)
    train(config, out=run_dir)
    return run_dir


def delete_units(enc, drop: set[int]) -> dict:
    """The encoded batch without the positions of the words in ``drop``."""
    keep = [p for p, u in enumerate(enc.unit_of) if u is None or u not in drop]
    tokens = enc.batch["tokens"][:, keep]
    return {"tokens": tokens, "lengths": torch.tensor([tokens.shape[1]])}


def drop_after(model, enc, c: int, p0: float, order) -> dict:
    """Probability drop of class ``c`` after deleting the first k words of ``order``, per k."""
    n = len(enc.units)
    out = {}
    for k in KS:
        removed = {int(u) for u in order[:min(k, n - 1)]}
        with torch.no_grad():
            p = torch.softmax(model(delete_units(enc, removed))["logits"][0].float(), -1)[c]
        out[k] = p0 - float(p)
    return out


def faithfulness(run, texts: list[str], gold: list[str], steps: int, orders: int, seed: int) -> tuple[dict, dict, int]:
    """Mean drop of the predicted class's probability per method and k, and seconds per method."""
    from attnkit.explain import encode_inputs, explain_encoded

    model, names = run.model, run.meta["labels"]
    drops = {m: {k: [] for k in KS} for m in (*METHODS, "random")}
    seconds = dict.fromkeys(METHODS, 0.0)
    rng = np.random.default_rng(seed)
    correct = 0
    for i, text in enumerate(texts):
        [enc] = encode_inputs(run, [text])
        with torch.no_grad():
            probs = torch.softmax(model(enc.batch)["logits"][0].float(), -1)
        c = int(probs.argmax())
        p0 = float(probs[c])
        for m in METHODS:
            t = time.perf_counter()
            e = explain_encoded(model, enc, m, names, target=c, steps=steps)
            seconds[m] += time.perf_counter() - t
            for k, d in drop_after(model, enc, c, p0, np.argsort(-e.scores, kind="stable")).items():
                drops[m][k].append(d)
        rand = [drop_after(model, enc, c, p0, rng.permutation(len(enc.units))) for _ in range(orders)]
        for k in KS:
            drops["random"][k].append(float(np.mean([r[k] for r in rand])))
        correct += int(names[c] == str(gold[i]))
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(texts)}", file=sys.stderr)
    means = {m: {k: float(np.mean(v)) for k, v in per_k.items()} for m, per_k in drops.items()}
    return means, seconds, correct



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/sst2/dev.tsv"))
    ap.add_argument("--bilstm", default="/tmp/attnkit-quality/sst2-bilstm_attention")
    ap.add_argument("--minilm", default="/tmp/attnkit-quality/sst2-minilm_full")
    ap.add_argument("--only", action="append", choices=["bilstm", "minilm"])
    ap.add_argument("--limit", type=int, default=None, help="first N dev sentences (default all)")
    ap.add_argument("--steps", type=int, default=50, help="integrated-gradients steps")
    ap.add_argument("--random-orders", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    from attnkit.data import read_table
    from attnkit.rundir import load_run

    table = read_table(args.data, "sentence", "label")
    texts, labels = table.texts[:args.limit], table.labels[:args.limit]
    models = {"bilstm": (Path(args.bilstm), ROOT / "examples/sst2_bilstm_attention.yaml"),
              "minilm": (Path(args.minilm), ROOT / "examples/sst2_minilm_full.yaml")}
    rows, notes = [], [(f"SST-2 dev, {len(texts)} sentences; words deleted from the input, at most n - 1 of n; "
                       f"drop = p(predicted class | full) - p(predicted class | deleted); random = mean of "
                       f"{args.random_orders} seeded orders; ig with {args.steps} steps.")]
    for name in args.only or list(models):
        run_dir, config = models[name]
        run = load_run(ensure_run(run_dir, config))
        print(f"{name}: {run_dir}", file=sys.stderr)
        t = time.perf_counter()
        means, seconds, correct = faithfulness(run, texts, labels, args.steps, args.random_orders, args.seed)
        for m, per_k in means.items():
            for k, v in per_k.items():
                rows.append(row(f"{name}/{m}", f"mean_prob_drop_k{k}", round(v, 4), better="higher",
                                model=name, method=m, k=k))
        for m, s in seconds.items():
            rows.append(row(f"{name}/{m}", "ms_per_sentence", round(1e3 * s / len(texts), 2), model=name, method=m))
        best = {k: max(METHODS, key=lambda m: means[m][k]) for k in KS}
        notes.append(f"{name} ({run_dir}): dev accuracy on these sentences {correct / len(texts):.4f}; most faithful "
                     f"per k: {best}; {time.perf_counter() - t:.0f} s")
        for m in (*METHODS, "random"):
            print(f"  {name:7s} {m:9s} " + "  ".join(f"k={k}: {means[m][k]:.4f}" for k in KS))
    path = write_results("explain", rows, notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
