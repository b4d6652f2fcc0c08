"""What ``precision: auto`` chooses for real runs, and what choosing costs: each config trains
one step with ``train.precision=auto`` and an empty probe cache, so both stages run (the
machine's ``Linear``, then the run's own training step, fp32 against bf16 autocast). The
choice is set beside the end-to-end bf16 gain committed for the same model
(``precision_quality.json``, ``finetune_speed.json``), which says whether it was right.
Results: ``benchmarks/results/precision_auto.json``.

    python benchmarks/precision_auto.py [--configs examples/sst2_bilstm_attention.yaml ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, has_bf16_units, row, timed_train, write_results  # noqa: E402

CONFIGS = ["examples/sst2_bilstm_attention.yaml", "examples/sst2_minilm_full.yaml", "examples/sst2_minilm_lora.yaml"]


# the end-to-end bf16/fp32 training-speed ratio committed for each config's model: (file, row name, metric)
END_TO_END = {"sst2_bilstm_attention": ("precision_quality", "sst2_bilstm_attention", "bf16_train_speedup"),
              "sst2_minilm_full": ("finetune_speed", "attnkit_full_bf16", "bf16_gain_over_fp32"),
              "sst2_minilm_lora": ("finetune_speed", "attnkit_lora_bf16", "bf16_gain_over_fp32")}


def committed_gain(stem: str) -> float | None:
    """The whole-run bf16 gain committed for ``stem`` (None: none)."""
    if stem not in END_TO_END:
        return None
    name, row_name, metric = END_TO_END[stem]
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    return next((r["value"] for r in rows if r["name"] == row_name and r["metric"] == metric), None)


class _Said(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def main() -> None:
    """Run each config one step under ``auto`` and record the choice, the probe and its cost."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-precision-auto"))
    args = ap.parse_args()
    if not (Path(__file__).resolve().parent.parent.parent / "shared" / "data").is_dir():
        sys.exit("../shared/data is missing: this benchmark reads the real SST-2")
    import torch

    from attnkit.train import precision as P

    torch.set_num_threads(2)
    spent = {}
    real = P.probe_work

    def timed(work):
        t0 = time.perf_counter()
        out = real(work)
        spent[work.what] = time.perf_counter() - t0
        return out

    P.probe_work = timed
    said = _Said()
    logging.getLogger("attnkit").addHandler(said)
    rows = []
    for config in args.configs:
        stem = Path(config).stem
        with tempfile.TemporaryDirectory() as cache:
            os.environ["ATTNKIT_CACHE"] = cache
            spent.clear()
            said.lines.clear()
            timed_train(config, args.work / stem, ["train.precision=auto", "train.max_steps=1"])
            probes = json.loads((Path(cache) / "precision.json").read_text())
        line = next(s for s in said.lines if s.startswith("training in precision"))
        chosen = line.split()[3]
        work = {k: v for k, v in probes.items() if k.count(" | ") == 3}  # CPU | torch | threads | work
        speedup = next(iter(work.values()))["bf16_speedup"] if work else None
        print(f"{stem}: {line}", flush=True)
        gain = committed_gain(stem)
        right = None if gain is None else (chosen == "bf16") == (gain >= P.BF16_MIN_SPEEDUP)
        rows.append(row(stem, "auto_choice_work_bf16_speedup", speedup, None, "higher", "x", chosen=chosen,
                        linear_bf16_speedup=next(v for k, v in probes.items() if k.count(" | ") == 2)["bf16_speedup"],
                        work_probe_s=round(sum(spent.values()), 2), end_to_end_bf16_gain=gain,
                        agrees_with_end_to_end=right, said=line))
    notes = ["each config: one training step with train.precision=auto and an empty probe cache (the run's "
             "first batch, forward + backward, fp32 vs bf16 autocast, one warm-up and best of "
             f"{P.WORK_REPS} each); bf16 is chosen when both probes reach {P.BF16_MIN_SPEEDUP}x",
             "end_to_end_bf16_gain: the bf16/fp32 training-speed ratio committed for whole runs of the same "
             "model (precision_quality.json; finetune_speed.json's attnkit rows, its own MiniLM config at batch "
             f"32); agrees_with_end_to_end: auto chose bf16 exactly when that gain is at least {P.BF16_MIN_SPEEDUP}x",
             f"CPU has bf16 units: {has_bf16_units()}"]
    print(f"wrote {write_results('precision_auto', rows, notes)}")


if __name__ == "__main__":
    main()
