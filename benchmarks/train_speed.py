"""Framework overhead: attnkit's Trainer vs a minimal hand-written PyTorch loop, on the same
model, data, batches (same order, so the same padding), optimiser and number of steps.

Contenders run in turn over several rounds in one process, the order rotated every round
(round r starts with contender r mod n; the first round is a warm-up), and the ratio of
median samples/s is reported, with every round's time; target: attnkit >= 0.95x the plain
loop. The Trainer's own timing of its step loop (its epoch line's samples/s, without the
end-of-run bookkeeping) is recorded beside it.

    python benchmarks/train_speed.py [--steps 150] [--rounds 5]
    python benchmarks/train_speed.py --quick --out /tmp/train_speed.json   # smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def sst2_case(n: int):
    """BiLSTM + additive attention on the first ``n`` SST-2 training sentences."""
    from attnkit import data as D

    table = D.read_table(DATA / "sst2" / "train.tsv", "sentence", "label")
    table = D.TableData(table.path, table.texts[:n], table.labels[:n], table.lines[:n])
    vocab = D.Vocab.build(t.split() for t in table.texts)
    labels = D.LabelVocab.build(table.labels)
    data = D.TextClassificationData.from_table(table, vocab, labels)
    model = {"embedding": {"dim": 300}, "encoder": {"type": "lstm", "hidden": 256},
             "pooler": {"type": "attention", "score": "additive"}}
    return "text_classification", model, data, {"vocab_size": len(vocab), "num_classes": 2}, 64


def mnist_case(n: int):
    """The image CNN + attention pooling on the first ``n`` MNIST training images."""
    from attnkit import data as D

    images, labels = D.read_mnist(DATA / "mnist", "train")
    data = D.ImageData(images[:n], labels[:n], mean=0.1307, std=0.3081)
    model = {"encoder": {"type": "image_cnn", "channels": [32, 64, 128]}, "pooler": {"type": "attention"}}
    return "image_classification", model, data, {"num_classes": 10, "in_channels": 1}, 128


def build(task, model_cfg, sizes, seed=0):
    import torch

    from attnkit.config import from_dict
    from attnkit.models import ModelConfig
    from attnkit.tasks import build_model

    torch.manual_seed(seed)
    return build_model(task, from_dict(ModelConfig, model_cfg, "model"), **sizes)


def plain_loop(model, data, batches, lr):
    """What a user writes by hand: forward, loss, backward, step."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)  # attnkit's Adam is fused since 2026-12-02
    model.train()
    for idx in batches:
        batch = data.collate(idx)
        loss = model.loss(model(batch), batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def attnkit_loop(model, data, steps, batch_size, lr, run_dir) -> float:
    """attnkit's Trainer for ``steps`` steps; returns its own samples/s of the step loop."""
    from attnkit.config import from_dict
    from attnkit.train import TrainConfig, Trainer

    cfg = from_dict(TrainConfig, {"epochs": 1, "batch_size": batch_size, "max_steps": steps, "grad_clip": 0.0,
                                  "optimizer": {"name": "adam", "lr": lr}}, "train")
    trainer = Trainer(model, data, None, cfg, run_dir, evaluate=lambda m, d: {}, progress=False)
    trainer.fit()
    return trainer.state["history"][-1]["train"]["samples_per_s"]


def measure(case, steps: int, rounds: int) -> dict:
    import torch

    from attnkit.data import length_bucketed_batches

    torch.set_num_threads(2)
    task, model_cfg, data, sizes, bs = case
    lengths = getattr(data, "lengths", None) or [1] * len(data)
    batches = length_bucketed_batches(lengths, bs, seed=0, epoch=0)[:steps]  # the Trainer's first-epoch order
    samples = sum(len(b) for b in batches)
    contenders = ["plain", "attnkit"]
    times = {c: [] for c in contenders}
    step_loop = []  # the Trainer's own samples/s of its step loop, per round
    for r in range(rounds):
        k = r % len(contenders)
        for who in contenders[k:] + contenders[:k]:  # round r starts with contender r mod n
            model = build(task, model_cfg, sizes)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                if who == "plain":
                    plain_loop(model, data, batches, 1e-3)
                else:
                    step_loop.append(attnkit_loop(model, data, steps, bs, 1e-3, tmp))
                times[who].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}  # round 0 is the warm-up
    return {"samples": samples, "plain_samples_per_s": samples / med["plain"],
            "attnkit_samples_per_s": samples / med["attnkit"], "rounds": rounds - 1,
            "attnkit_step_loop_samples_per_s": statistics.median(step_loop[1:]),
            "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "step_loop_per_round": [round(x, 1) for x in step_loop]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=20000, help="training examples per case")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 steps, 3 rounds, 2,000 examples")
    ap.add_argument("--out", help="results file (default benchmarks/results/train_speed.json)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds, args.n = 10, 3, 2000
    if args.rounds < 2:
        sys.exit("--rounds: at least 2 (the first is a warm-up)")
    if not DATA.is_dir():
        sys.exit("../shared/data is missing: this benchmark reads SST-2 and MNIST")
    rows = []
    for name, case in (("bilstm_attention/sst2", sst2_case(args.n)), ("cnn_attention/mnist", mnist_case(args.n))):
        res = measure(case, args.steps, args.rounds)
        ratio = res["attnkit_samples_per_s"] / res["plain_samples_per_s"]
        print(f"{name:24} plain {res['plain_samples_per_s']:8.1f}/s  attnkit {res['attnkit_samples_per_s']:8.1f}/s  "
              f"ratio {ratio:.3f}", flush=True)
        rows.append(row(name, "plain_loop_samples_per_s", round(res["plain_samples_per_s"], 1), None, "higher", "1/s"))
        rows.append(row(name, "attnkit_samples_per_s", round(res["attnkit_samples_per_s"], 1), None, "higher", "1/s",
                        times_s=res["times_s"]))
        rows.append(row(name, "attnkit_step_loop_samples_per_s", round(res["attnkit_step_loop_samples_per_s"], 1),
                        None, "higher", "1/s", per_round=res["step_loop_per_round"],
                        vs_plain_loop=round(res["attnkit_step_loop_samples_per_s"] / res["plain_samples_per_s"], 3)))
        rows.append(row(name, "speed_vs_plain_loop", round(ratio, 3), 0.95, "higher", "x",
                        steps=args.steps, samples=res["samples"], rounds=res["rounds"]))
    write_results("train_speed", rows, [
        "same model, data, batch order, optimiser (Adam, fused) and steps for both; grad clipping off for both",
        "attnkit time includes its per-epoch bookkeeping (metrics.jsonl, checkpoints at the end)",
        ("attnkit_step_loop_samples_per_s: the Trainer's own timing of its step loop (its epoch line), without "
         "the end-of-run bookkeeping; vs_plain_loop divides it by the plain loop's samples/s"),
        ("contenders run in turn, round r starting with contender r mod 2 (the order rotates); round 0 is a "
         "warm-up; median of the rest; times_s gives every round")], args.out)


if __name__ == "__main__":
    main()
