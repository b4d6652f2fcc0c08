"""What each part of attnkit's fine-tuning step buys: MiniLM on SST-2 batches, full
fine-tuning and LoRA, one training step (forward, loss, backward, clip, AdamW) per batch.

Variants, each adding one thing to the one above it:

  transformers   the transformers forward (``finetune.fast: false``)
  walk           the fast path walking the same modules with SDPA
  + cls_only     the last layer for [CLS] alone (the head reads only it)
  + sparse_emb   sparse word-embedding gradients and a lazy AdamW (full fine-tuning only)

All variants run the same length-bucketed batches from the first ``--n`` SST-2 training
sentences, interleaved over ``--rounds`` rounds; per round the median step time, then
the median over rounds. Writes ``benchmarks/results/finetune_ablation.json``.

    python benchmarks/finetune_ablation.py [--n 4000] [--steps 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2"
VARIANTS = ["transformers", "walk", "cls_only", "sparse_emb"]
# A fused QKV matmul (one [*, 384] x [384, 1152] product instead of three) was measured here
# too and dropped: 5% slower for full fine-tuning (the weights are concatenated every step)
# and 2% slower for LoRA (frozen base weights concatenated once), within noise of no gain.


def configure(model, variant: str) -> None:
    """Switch the model to ``variant`` (each includes the ones listed before it)."""
    k = VARIANTS.index(variant)
    enc = model.encoder
    enc.fast = k >= 1
    model.first_only = k >= 2
    enc.sparse_embeddings = k >= 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    from attnkit.config import from_dict
    from attnkit.data import length_bucketed_batches
    from attnkit.finetune import text_data
    from attnkit.models import ModelConfig
    from attnkit.tasks import build_model
    from attnkit.finetune.backbones import load_tokenizer
    from attnkit.train.optim import OptimizerConfig, build_optimizer, clip_grad_norm

    torch.set_num_threads(2)
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs SST-2 from ../shared/data")
    lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:args.n + 1]
    texts, labels = [ln.rsplit("\t", 1)[0] for ln in lines], [int(ln.rsplit("\t", 1)[1]) for ln in lines]
    data = text_data(load_tokenizer("minilm"), texts, labels, 64)
    batches = length_bucketed_batches(data.lengths, 32, seed=0)[:args.steps]
    rows = []
    for method in ("full", "lora"):
        torch.manual_seed(0)
        model = build_model("text_classification", from_dict(ModelConfig, {
            "pretrained": "minilm", "finetune": {"method": method}}), num_classes=2).train()
        opt = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-5))
        variants = VARIANTS if method == "full" else VARIANTS[:3]
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                configure(model, v)
                steps = []
                for b in batches:
                    t0 = time.perf_counter()
                    batch = data.collate(b)
                    out = model(batch)
                    model.loss(out, batch).backward()
                    clip_grad_norm(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    steps.append(time.perf_counter() - t0)
                times[v].append(statistics.median(steps[3:]))
                print(f"{method} {v}: {times[v][-1] * 1e3:.1f} ms/step", flush=True)
        base = None
        for v in variants:
            ms = statistics.median(times[v]) * 1e3
            base = base or ms
            rows.append(row(f"{method}/{v}", "median_step_ms", round(ms, 1), None, "lower", "ms",
                            per_round=[round(t * 1e3, 1) for t in times[v]], speedup_vs_transformers=round(base / ms, 3)))
    write_results("finetune_ablation", rows, [(f"first {args.n} SST-2 sentences, {args.steps} batches of 32, "
                                              f"length-bucketed; median step per round, median over rounds")])


if __name__ == "__main__":
    main()
