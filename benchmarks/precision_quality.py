"""Quality and time of a from-scratch run in fp32 and in bf16 (``train.precision``), the same
config and seed one after the other: SST-2 dev accuracy of the BiLSTM + attention example
(issue "Deploy": bf16 within 0.3 point of fp32). bf16 is measured only on a CPU with bf16
units (else the row says why). Results: ``benchmarks/results/precision_quality.json``.

    python benchmarks/precision_quality.py [--config examples/sst2_bilstm_attention.yaml]
    python benchmarks/precision_quality.py --config examples/sst2_minilm_lora.yaml --precisions bf16

With ``--precisions bf16`` alone the fp32 side is the config's row in
``benchmarks/results/quality.json`` (same config and seed, trained earlier, machine named
there); another config than the default writes ``precision_quality_<config>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import has_bf16_units, row, timed_train, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_POINTS = 0.3


def main() -> None:
    """Train the config in both precisions and compare dev accuracy and wall time."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="examples/sst2_bilstm_attention.yaml")
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-precision-quality"))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data").is_dir():
        sys.exit("../shared/data is missing: this benchmark trains on the real SST-2")
    import torch

    torch.set_num_threads(2)
    name = Path(args.config).stem
    results = {}
    precisions = [p for p in args.precisions if p == "fp32" or has_bf16_units()]
    reference = None
    if "fp32" not in precisions:  # the fp32 run of quality.json, same config and seed
        quality = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())
        found = [r for r in quality["rows"] if r["name"].replace("/", "_") == name and r["metric"] == "dev_accuracy"]
        if not found:
            sys.exit(f"no fp32 row for {name} in benchmarks/results/quality.json: run fp32 too")
        reference = {"from": f"benchmarks/results/quality.json ({quality['date']}, {quality['machine'].get('cpu')})"}
        results["fp32"] = (found[0]["value"], None)
    for precision in precisions:
        out = args.work / f"{name}-{precision}"
        seconds = timed_train(args.config, out, [f"train.precision={precision}"])
        acc = json.loads((out / "eval.json").read_text())["dev"]["accuracy"]
        results[precision] = (acc, seconds)
        print(f"{precision}: dev accuracy {acc:.4f} in {seconds / 60:.1f} min", flush=True)
    rows = [row(f"{name}/{p}", "dev_accuracy", round(a, 4), None, "higher",
                train_s=None if s is None else round(s, 1), **((reference or {}) if p == "fp32" else {}))
            for p, (a, s) in results.items()]
    if "bf16" in results:
        gap = round((results["fp32"][0] - results["bf16"][0]) * 100, 2)
        rows.append(row(name, "bf16_accuracy_drop_points", gap, TARGET_POINTS, "lower",
                        **({"note": "fp32 from another run and machine: " + reference["from"]} if reference else {})))
        if reference is None:
            rows.append(row(name, "bf16_train_speedup", round(results["fp32"][1] / results["bf16"][1], 3), None,
                            "higher", "x"))
    else:
        rows.append(row(name, "bf16_accuracy_drop_points", None, TARGET_POINTS, "lower",
                        note="not measured: this CPU has no bf16 units (no amx_bf16/avx512_bf16 in /proc/cpuinfo)"))
    notes = [f"{args.config}, seed and data as configured; fp32 first, then train.precision=bf16 (autocast, fp32 "
             "master weights), one run each, nothing else running; accuracy drop = fp32 - bf16 in points"]
    if reference:
        notes.append(f"fp32 not run here: its dev accuracy is {reference['from']}'s row for this config")
    default = Path(args.config).stem == "sst2_bilstm_attention"
    print(f"wrote {write_results('precision_quality' if default else f'precision_quality_{name}', rows, notes)}")


if __name__ == "__main__":
    main()
