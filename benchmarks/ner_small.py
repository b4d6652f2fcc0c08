"""Small NER data: the from-scratch tagger recipe on a 3,000-sentence subset of CoNLL-2003
train (dev and test as usual), before and after its remedies, and on the full set.

    python benchmarks/ner_small.py                       # subset before/after + full after
    python benchmarks/ner_small.py --variants before,after --sets small

"before" is ``examples/conll_bilstm_crf.yaml`` with the remedies switched off (the recipe as
it was: no word dropout); "after" is the recipe as committed. The subset is a seeded sample
of whole sentences. Target: entity F1 on test +5 points on the subset, no loss on the full
set. Results: ``benchmarks/results/ner_small.json``. Needs ../shared/data/conll2003."""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, row, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "conll2003"
RECIPE = ROOT / "examples" / "conll_bilstm_crf.yaml"
SUBSET = 3000
# the remedies, switched off: what the recipe was before this change
BEFORE = ["model.embedding.word_dropout=0"]


def subset_file(out: Path, n: int, seed: int = 0) -> Path:
    """``n`` seeded whole sentences of CoNLL-2003 train, as a CoNLL file."""
    blocks = [b for b in DATA.joinpath("train.txt").read_text(encoding="utf-8").split("\n\n")
              if b.strip() and not b.startswith("-DOCSTART-")]
    random.Random(seed).shuffle(blocks)
    out.write_text("\n\n".join(blocks[:n]) + "\n", encoding="utf-8")
    return out


def run(variant: str, train_file: Path, out_root: Path) -> dict:
    """Train the recipe (``variant``: before/after) on ``train_file``; test scores and time."""
    import torch

    from attnkit.run import train

    torch.set_num_threads(2)
    extra = {"before": BEFORE, "after": []}.get(variant)
    if extra is None:  # wdX: the recipe with word dropout X (for choosing X on dev)
        extra = [f"model.embedding.word_dropout={float(variant.removeprefix('wd'))}"]
    overrides = [f"data.train={train_file}", "train.report=false", *extra]
    t0 = time.perf_counter()
    result = train(RECIPE, out=out_root / f"{variant}-{train_file.stem}", overrides=overrides, progress=False)
    return {"f1": result.test["f1"], "dev_f1": result.dev["f1"], "seconds": round(time.perf_counter() - t0, 1),
            "overrides": overrides}


def main() -> None:
    """Run the variants on the chosen sets and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--sets", default="small,full")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA} (see ../shared/data/README.md)")
    rows, scores = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {"small": subset_file(tmp / "train3000.txt", SUBSET), "full": DATA / "train.txt"}
        for which in args.sets.split(","):
            for variant in args.variants.split(","):
                r = run(variant, files[which], tmp)
                scores[(which, variant)] = r["f1"]
                print(f"{which} {variant}: test f1 {r['f1']:.4f} (dev {r['dev_f1']:.4f}, {r['seconds']} s)",
                      flush=True)
                rows.append(row(f"conll2003_{which}/{variant}", "test_entity_f1", round(r["f1"], 4), better="higher",
                                dev_f1=round(r["dev_f1"], 4), seconds=r["seconds"], overrides=r["overrides"],
                                train_sentences=SUBSET if which == "small" else 14041))
    for which, target in (("small", 0.05), ("full", 0.0)):
        if (which, "before") in scores and (which, "after") in scores:
            gain = round(scores[(which, "after")] - scores[(which, "before")], 4)
            rows.append(row(f"conll2003_{which}/gain", "test_entity_f1_gain", gain, target=target, better="higher"))
    notes = [(f"recipe {RECIPE.relative_to(ROOT)}; 'before' adds {BEFORE}; subset: {SUBSET} seeded sentences of "
              "train (random.Random(0)); dev valid.txt, test test.txt"), f"machine: {machine()['cpu']}"]
    print(write_results("ner_small", rows, notes))


if __name__ == "__main__":
    main()
