"""Data-parallel training (issue "Training methods", item 5): `attnkit train --nproc 2`
(2 ranks x 1 thread, DDP over gloo) against one process with 2 threads, the same global batch
and the same steps, on SST-2 with the BiLSTM + attention classifier
(examples/sst2_bilstm_attention.yaml, batch 64 = 2 x 32), rounds interleaved.

    python benchmarks/distributed.py [--steps 150] [--rounds 2]

Throughput is the training samples/s the run logs for its (cut) epoch: forward, backward,
gradient all-reduce and optimiser step, not data reading or dev evaluation. Results in
benchmarks/results/distributed.json."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "sst2_bilstm_attention.yaml"


def one_run(out: Path, steps: int, nproc: int, threads: int) -> float:
    """Train ``steps`` steps; the logged training samples/s."""
    shutil.rmtree(out, ignore_errors=True)
    batch = 64 // nproc
    cmd = [sys.executable, "-m", "attnkit", "train", str(CONFIG), "--out", str(out), "--set", "train.epochs=1",
           "--set", f"train.max_steps={steps}", "--set", f"train.batch_size={batch}", "--set", "train.report=false"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r["train_samples_per_s"] for r in records if r.get("kind") == "epoch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-distributed-bench"))
    args = ap.parse_args()
    runs = {"1 process x 2 threads": (1, 2), "2 ranks x 1 thread (--nproc 2)": (2, 1)}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name, (nproc, threads) in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            rates[name].append(one_run(args.work / f"r{r}-{nproc}", args.steps, nproc, threads))
            print(f"round {r + 1}: {name}: {rates[name][-1]:.1f} samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["1 process x 2 threads"]
    rows = [row(f"SST-2 BiLSTM + attention, global batch 64: {k}", "train_samples_per_s", round(v, 1), None, "higher",
                rounds=[round(x, 1) for x in rates[k]], ratio_vs_one_process=round(v / base, 3))
            for k, v in med.items()]
    notes = [f"{args.steps} optimiser steps per run, {args.rounds} rounds interleaved (order alternating); median",
             "both contenders take the same steps: 2 ranks x 32 examples = 1 process x 64 (tests/train/"
             "test_distributed.py checks the weights agree)"]
    print(f"wrote {write_results('distributed', rows, notes)}")


if __name__ == "__main__":
    main()
