"""Quality and time of a from-scratch run in fp32 and in bf16 (``train.precision``), the same
config and seed one after the other, for each of ``--seeds``: SST-2 dev accuracy of the
BiLSTM + attention example (issue "Deploy": bf16 within 0.3 point of fp32). With several seeds
the gap is the mean of the per-seed gaps, given with their spread: one seed's gap mixes the
precision's effect with how far two trajectories drift apart. bf16 is measured only on a CPU
with bf16 units (else the row says why). Results: ``benchmarks/results/precision_quality.json``.

    python benchmarks/precision_quality.py [--config examples/sst2_bilstm_attention.yaml] [--seeds 0 1 2]
    python benchmarks/precision_quality.py --config examples/sst2_minilm_lora.yaml --precisions bf16

With ``--precisions bf16`` alone the fp32 side is the config's row in
``benchmarks/results/quality.json`` (same config and seed, trained earlier, machine named
there; one seed); another config than the default writes ``precision_quality_<config>.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import has_bf16_units, row, timed_train, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_POINTS = 0.3


def main() -> None:
    """Train the config in both precisions (per seed) and compare dev accuracy and wall time."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="examples/sst2_bilstm_attention.yaml")
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-precision-quality"))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="train.seed values (default: the config's)")
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data").is_dir():
        sys.exit("../shared/data is missing: this benchmark trains on the real SST-2")
    import torch

    torch.set_num_threads(2)
    name = Path(args.config).stem
    precisions = [p for p in args.precisions if p == "fp32" or has_bf16_units()]
    seeds = args.seeds or [None]
    results = {}  # (seed, precision) -> (accuracy, seconds)
    reference = None
    if "fp32" not in precisions:  # the fp32 run of quality.json, same config and seed
        if len(seeds) > 1:
            sys.exit("--precisions bf16 compares with quality.json's one fp32 run: give one seed, or run fp32 too")
        quality = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())
        found = [r for r in quality["rows"] if r["name"].replace("/", "_") == name and r["metric"] == "dev_accuracy"]
        if not found:
            sys.exit(f"no fp32 row for {name} in benchmarks/results/quality.json: run fp32 too")
        reference = {"from": f"benchmarks/results/quality.json ({quality['date']}, {quality['machine'].get('cpu')})"}
        results[(seeds[0], "fp32")] = (found[0]["value"], None)
    for seed in seeds:
        for precision in precisions:
            tag = "" if seed is None else f"-seed{seed}"
            out = args.work / f"{name}-{precision}{tag}"
            overrides = [f"train.precision={precision}"] + ([] if seed is None else [f"train.seed={seed}"])
            seconds = timed_train(args.config, out, overrides)
            acc = json.loads((out / "eval.json").read_text())["dev"]["accuracy"]
            results[(seed, precision)] = (acc, seconds)
            print(f"seed {seed}, {precision}: dev accuracy {acc:.4f} in {seconds / 60:.1f} min", flush=True)
    rows = [row(f"{name}/{p}", "dev_accuracy", round(a, 4), None, "higher", seed=seed,
                train_s=None if t is None else round(t, 1), **((reference or {}) if p == "fp32" else {}))
            for (seed, p), (a, t) in results.items()]
    if "bf16" in precisions:
        gaps = [round((results[(s, "fp32")][0] - results[(s, "bf16")][0]) * 100, 2) for s in seeds]
        spread = {"per_seed": gaps, "std": round(statistics.stdev(gaps), 2)} if len(gaps) > 1 else {}
        note = {"note": "fp32 from another run and machine: " + reference["from"]} if reference else {}
        rows.append(row(name, "bf16_accuracy_drop_points", round(statistics.mean(gaps), 2), TARGET_POINTS, "lower",
                        seeds=len(seeds), **spread, **note))
        if reference is None:
            speed = [results[(s, "fp32")][1] / results[(s, "bf16")][1] for s in seeds]
            rows.append(row(name, "bf16_train_speedup", round(statistics.median(speed), 3), None, "higher", "x",
                            **({"per_seed": [round(x, 3) for x in speed]} if len(speed) > 1 else {})))
    else:
        rows.append(row(name, "bf16_accuracy_drop_points", None, TARGET_POINTS, "lower",
                        note="not measured: this CPU has no bf16 units (no amx_bf16/avx512_bf16 in /proc/cpuinfo)"))
    notes = [f"{args.config}, data as configured, seeds {seeds if args.seeds else 'as configured'}; per seed fp32 "
             "first, then train.precision=bf16 (autocast, fp32 master weights), nothing else running; accuracy "
             "drop = fp32 - bf16 in points, the mean over seeds (per_seed and std beside it)"]
    if reference:
        notes.append(f"fp32 not run here: its dev accuracy is {reference['from']}'s row for this config")
    default = Path(args.config).stem == "sst2_bilstm_attention"
    print(f"wrote {write_results('precision_quality' if default else f'precision_quality_{name}', rows, notes)}")


if __name__ == "__main__":
    main()
