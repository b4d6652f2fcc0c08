"""Quality on the real data sets: train each example config from scratch, evaluate, and
record metrics, wall time, config and machine in ``benchmarks/results/quality.json``.

    python benchmarks/quality.py                       # every run (hours on 2 cores)
    python benchmarks/quality.py --only sst2/textcnn   # one run; merged into the results file

Each row keeps its own command and date, so runs made by separate invocations can sit in
one file. Needs ../shared/data (see its README)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, row

ROOT = Path(__file__).resolve().parent.parent
# name -> (example config, metric split, metric key, target[, wall-time limit in s or None])
RUNS = {
    "sst2/bilstm_attention": ("sst2_bilstm_attention.yaml", "dev", "accuracy", 0.84),
    "sst2/textcnn": ("sst2_textcnn.yaml", "dev", "accuracy", 0.82),
    "sst2/transformer": ("sst2_transformer.yaml", "dev", "accuracy", 0.82),
    "mnist/cnn": ("mnist_cnn.yaml", "test", "accuracy", 0.992),
    "conll2003/bilstm_crf": ("conll_bilstm_crf.yaml", "test", "f1", 0.80),
    # fine-tuned all-MiniLM-L6-v2 (needs the pretrained extra)
    "sst2/minilm_full": ("sst2_minilm_full.yaml", "dev", "accuracy", 0.89),
    "sst2/minilm_lora": ("sst2_minilm_lora.yaml", "dev", "accuracy", 0.88),
    "conll2003/minilm": ("conll_minilm.yaml", "test", "f1", 0.84, None),
    "financial_phrasebank/minilm": ("financial_sentiment.yaml", "test", "accuracy", 0.82),
    "clinc150/minilm": ("intent_routing.yaml", "test", "in_scope_accuracy", 0.92),
    # translation (Multi30k test2016): lowercased sacreBLEU, as the published tutorials report it
    "multi30k/transformer_de_en": ("multi30k_transformer.yaml", "test", "bleu_lc", 37.0, 3600),
    "multi30k/gru_additive_de_en": ("multi30k_gru.yaml", "test", "bleu_lc", 30.0, 3600),
    # the other direction, reported (no target): the same configs with the languages swapped
    "multi30k/gru_additive_en_de": ("multi30k_gru.yaml", "test", "bleu_lc", None, 3600),
    "multi30k/transformer_en_de": ("multi30k_transformer.yaml", "test", "bleu_lc", None, 3600),
}
# overrides a run always gets, before any given with --set
RUN_OVERRIDES = {name: ["data.source_lang=en", "data.target_lang=de"]
                 for name in ("multi30k/gru_additive_en_de", "multi30k/transformer_en_de")}
WALL_LIMIT_S = 30 * 60


def run_one(name: str, out_root: Path, overrides: list[str]) -> list[dict]:
    """Train one example config and return its rows."""
    import torch

    from attnkit.config import load_yaml
    from attnkit.run import train

    torch.set_num_threads(2)
    overrides = RUN_OVERRIDES.get(name, []) + overrides
    config, split, metric, target, *limit = RUNS[name]
    limit = limit[0] if limit else WALL_LIMIT_S
    cfg_path = ROOT / "examples" / config
    out = out_root / name.replace("/", "-")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    result = train(cfg_path, out=out, overrides=overrides, progress=False)
    wall = time.perf_counter() - t0
    scores = result.test if split == "test" else result.dev
    extra = {"config": str(cfg_path.relative_to(ROOT)), "overrides": overrides,
             "resolved_config": load_yaml(out / "config.yaml"),
             "run_dir": str(out), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "command": " ".join([Path(sys.executable).name, *sys.argv]),
             "dev": {k: v for k, v in result.dev.items() if isinstance(v, float)},
             "test": {k: v for k, v in (result.test or {}).items() if isinstance(v, float)} or None}
    label = {"accuracy": f"{split}_accuracy", "f1": f"{split}_entity_f1"}.get(metric, f"{split}_{metric}")
    meta = json.loads((out / "meta.json").read_text())
    extra["parameters"] = meta.get("parameters")
    extra["run_dir_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    extra["weights_bytes"] = (out / "model.safetensors").stat().st_size
    rows = [row(name, label, round(scores[metric], 4), target, "higher", **extra)]
    if "oos_recall" in scores:
        rows.append(row(name, f"{split}_oos_recall", round(scores["oos_recall"], 4), None, "higher"))
    return rows + [row(name, "wall_time_s", round(wall, 1), limit, "lower", "s")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=sorted(RUNS), help="run only these (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/attnkit-quality"), help="where run directories go")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override for every run")
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data").is_dir():
        sys.exit("../shared/data is missing: quality runs need the real data sets")
    path = RESULTS / "quality.json"
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    names = args.only or list(RUNS)
    rows = [r for r in old["rows"] if r["name"] not in names]
    for name in names:
        print(f"== {name}", flush=True)
        new = run_one(name, args.out, args.overrides)
        for r in new:
            print(f"{r['name']:24} {r['metric']:18} {r['value']:>10} target {r['target']}  "
                  f"{'' if r['target'] is None else 'OK' if r.get('meets') else 'MISS'}", flush=True)
        rows += new
        RESULTS.mkdir(parents=True, exist_ok=True)
        order = {n: i for i, n in enumerate(RUNS)}
        rows.sort(key=lambda r: (order.get(r["name"], 99), r["metric"]))
        payload = {"command": "python benchmarks/quality.py [--only NAME] (per-row command and date in each row)",
                   "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                   "notes": [("trained from scratch on ../shared/data with the configs in examples/; "
                             "metric split per row (SST-2 dev: its test set has no labels)")],
                   "rows": rows}
        path.write_text(json.dumps(payload, indent=1) + "\n")  # after every run: a long job keeps what it did


if __name__ == "__main__":
    main()
