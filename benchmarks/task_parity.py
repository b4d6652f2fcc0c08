"""Same seed, same metrics: one short run per task, to compare a refactor with what came before.

Trains each config below (short: ``train.max_steps``), then records dev/test metrics, the
SHA-256 of ``model.safetensors`` and the predictions for a few texts. Run it on two checkouts
and compare the JSON files: ``--compare A.json B.json`` prints every difference.

    python benchmarks/task_parity.py --out /tmp/before.json      # on the old checkout
    python benchmarks/task_parity.py --out benchmarks/results/task_parity.json --compare /tmp/before.json
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine, row  # noqa: E402

DATA = Path("../shared/data")  # the example configs name their data relative to the current directory
RUNS = {  # name -> (config, overrides, texts to predict)
    "toy_sentiment": ("examples/toy_sentiment.yaml", [], ["a dull , clumsy film", "a gripping , funny film"]),
    "conll_bilstm_crf": ("examples/conll_bilstm_crf.yaml", ["train.max_steps=60", "train.epochs=1"],
                         ["EU rejects German call to boycott British lamb ."]),
    "mnist_cnn": ("examples/mnist_cnn.yaml", ["train.max_steps=60", "train.epochs=1"], []),
    "sst2_minilm_lora": ("examples/sst2_minilm_lora.yaml", ["train.max_steps=30", "train.epochs=1",
                                                           "model.finetune.max_len=32"], ["a gripping , funny film"]),
    "conll_minilm": ("examples/conll_minilm.yaml", ["train.max_steps=20", "train.epochs=1"],
                     ["EU rejects German call to boycott British lamb ."]),
}


def one(name: str, tmp: Path) -> dict:
    """Train one config and record what must not change."""
    from attnkit.run import predict, train

    config, overrides, texts = RUNS[name]
    overrides = [*overrides, "train.report=false"]
    result = train(ROOT / config, out=tmp / name, overrides=overrides, progress=False)
    digest = hashlib.sha256((result.run_dir / "model.safetensors").read_bytes()).hexdigest()
    drop = ("per_class", "confusion_matrix")
    clean = (lambda m: None if m is None else {k: v for k, v in m.items() if k not in drop})
    return {"dev": clean(result.dev), "test": clean(result.test), "weights_sha256": digest,
            "predict": predict(result.run_dir, texts) if texts else []}


def compare(a: dict, b: dict) -> list[str]:
    """Every run field that differs between two result files."""
    diffs = []
    for name in sorted(set(a["runs"]) & set(b["runs"])):
        for key in ("dev", "test", "weights_sha256", "predict"):
            if a["runs"][name].get(key) != b["runs"][name].get(key):
                diffs.append(f"{name}.{key}: {a['runs'][name].get(key)} != {b['runs'][name].get(key)}")
    return diffs


def main() -> None:
    """Run the parity set (those whose data is present) and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=list(RUNS))
    ap.add_argument("--compare", help="an earlier result file: report every difference")
    args = ap.parse_args()
    runs, skipped = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            if name != "toy_sentiment" and not DATA.is_dir():
                skipped[name] = f"{DATA} not present"
                continue
            print(f"== {name}", file=sys.stderr, flush=True)
            runs[name] = one(name, Path(tmp))
    out = {"command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
           "machine": machine(),
           "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT).stdout.strip(),
           "runs": runs, "skipped": skipped}
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        diffs = compare(before, out)
        out["compared_with"] = {"git": before.get("git"), "differences": diffs, "identical": not diffs}
        # one row per run: 1 when dev/test metrics, weights and predictions all match (target 1)
        out["rows"] = [row(name, "identical_to_" + str(before.get("git")),
                           int(not any(d.startswith(name + ".") for d in diffs)), 1, "higher", "")
                       for name in sorted(set(before["runs"]) & set(runs))]
        print("\n".join(diffs) or "identical: metrics, weights and predictions", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
