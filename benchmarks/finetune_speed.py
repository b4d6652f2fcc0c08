"""Fine-tuning speed: attnkit vs the Hugging Face Trainer on MiniLM (all-MiniLM-L6-v2), SST-2.

Contenders, for full fine-tuning and for LoRA (r=8, alpha=16 on query/value), all with batch
size 32, the same learning rate, linear decay without warm-up, weight decay 0, gradient
clipping 1.0, the same number of steps and the same dropout:

  hf_maxlen  the Trainer as most users configure it: every text padded to 64 pieces;
  hf_best    the Trainer at its best: DataCollatorWithPadding (dynamic padding),
             group_by_length (``train_sampling_strategy``), fused AdamW;
  attnkit    attnkit's Trainer on the same config (``model.pretrained: minilm``);
  *_bf16     with ``--bf16`` (the default on a CPU with bf16 units: ``amx_bf16`` or
             ``avx512_bf16``): hf_best with ``bf16=True`` and attnkit with
             ``train.precision: bf16`` (autocast, fp32 master weights), compared with each
             other. Without bf16 units torch emulates bf16 several times slower than fp32,
             so the rows say "not measured" rather than time an emulation.

Each contender trains ``--steps`` steps in ``--rounds`` chunks; the chunks are interleaved
(round r runs chunk r of every contender, each resuming from its checkpoint, and starts
with contender r mod 3, so the order rotates), so machine noise hits every contender alike.
Per chunk, the first ``--warmup`` steps are warm-up; the steps after it give samples/s (all
of them: samples / time; and from the median step, the issue's measure, which favours
length-bucketed contenders whose median batch is shorter than the average one); ratios are
taken per round and the median over rounds is reported. After the last chunk each model is
scored on SST-2 dev.

Model FLOPs utilisation = FLOPs per second / the fp32 matmul rate measured here, on the
real (unpadded) pieces, two ways:

  mfu           model FLOPs: the full model, every layer at every piece (and the pooler
                counted per piece), the same count for every contender;
  mfu_executed  the FLOPs each contender actually executes: attnkit's last layer computes
                queries, output projection and feed-forward for [CLS] alone (keys and values
                for every piece) and the pooler runs on [CLS] only, about 1/7 less than the
                model count. The MFU target is checked on this one.

    python benchmarks/finetune_speed.py [--steps 240] [--rounds 3] [--only full|lora]
    python benchmarks/finetune_speed.py --quick --out /tmp/finetune_speed.json   # smoke run
    python benchmarks/finetune_speed.py --bf16 on|off   # bf16 contenders (default: auto, by CPU)
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import has_bf16_units, row, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sst2"
BATCH = 32
MAX_LEN = 64
LR = {"full": 1e-4, "lora": 1e-3}
LAYERS, WIDTH, FF = 6, 384, 1536  # MiniLM-L6-H384


def matmul_rate() -> float:
    """Measured fp32 GFLOP/s of a 2048^3 matmul (median of 7) on this machine."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048 ** 3 / statistics.median(times) / 1e9


def read_sst2(split: str) -> tuple[list[str], list[int]]:
    """Texts and labels of an SST-2 split."""
    from attnkit.data import read_table

    t = read_table(DATA / f"{split}.tsv", "sentence", "label")
    return t.texts, [int(x) for x in t.labels]


def model_flops_per_sample(lengths: list[int], method: str) -> float:
    """Training FLOPs per example of the full model: 2 x (non-embedding weights) x pieces +
    4 x layers x pieces^2 x width (attention scores and mixing) for the forward; backward
    twice the forward for full fine-tuning, once (input gradients only) for LoRA with its
    frozen weights."""
    layers, width, ff = LAYERS, WIDTH, FF
    weights = layers * (4 * width * width + 2 * width * ff) + width * width  # + pooler
    fwd = sum(2 * weights * n + 4 * layers * n * n * width for n in lengths) / len(lengths)
    return fwd * (3 if method == "full" else 2)


def layer_flops(n: int, queries: int) -> int:
    """Forward FLOPs of one BERT layer over ``n`` pieces computing ``queries`` positions:
    key and value projections over all ``n`` (2 x 2 w^2 n); query and output projections and
    the feed-forward over the queries (2 x (2 w^2 + 2 w ff) x queries); scores and mixing of
    the queries against ``n`` keys (4 x queries x n x w). ``queries = n`` is the full layer."""
    w, ff = WIDTH, FF
    return 2 * 2 * w * w * n + 2 * (2 * w * w + 2 * w * ff) * queries + 4 * queries * n * w


def executed_flops_per_sample(lengths: list[int], method: str, cls_only: bool) -> float:
    """Training FLOPs per example as executed: layers 1..L-1 in full; the last layer in full,
    or with ``cls_only`` (attnkit's fast path, attnkit/finetune/encoder.py) for the [CLS]
    query alone; the pooler (dense w x w) on [CLS] only, in both the transformers sequence
    classifier and attnkit. Backward as in :func:`model_flops_per_sample`; LoRA's rank-8
    updates (< 1%) are not counted, as there."""
    fwd = sum((LAYERS - 1) * layer_flops(n, n) + layer_flops(n, 1 if cls_only else n) + 2 * WIDTH * WIDTH
              for n in lengths) / len(lengths)
    return fwd * (3 if method == "full" else 2)


class Steps:
    """Wall-clock step times of one contender, per chunk."""

    def __init__(self):
        self.chunks: list[list[float]] = []
        self._last = None

    def start_chunk(self):
        """A new chunk begins: the next step is timed from now."""
        self.chunks.append([])
        self._last = time.perf_counter()

    def step(self):
        """One optimiser step finished."""
        now = time.perf_counter()
        self.chunks[-1].append(now - self._last)
        self._last = now


# ---------------------------------------------------------------------------- Hugging Face
class HFContender:
    """The Hugging Face Trainer, resumed chunk by chunk from its own checkpoints."""

    def __init__(self, name: str, method: str, best: bool, train, steps: int, chunk: int, work: Path,
                 bf16: bool = False):
        import torch
        from transformers import (
            DataCollatorWithPadding,
            TrainerCallback,
            TrainingArguments,
        )

        from attnkit.finetune.backbones import load_tokenizer, resolve_backbone

        self.name, self.method, self.best, self.work = name, method, best, work / name
        self.steps, self.chunk, self.timer = steps, chunk, Steps()
        self.dir = resolve_backbone("minilm")
        self.tok = load_tokenizer("minilm")
        texts, labels = train
        t0 = time.perf_counter()
        if best:
            enc = self.tok(texts, truncation=True, max_length=MAX_LEN)
        else:
            enc = self.tok(texts, truncation=True, max_length=MAX_LEN, padding="max_length")
        self.data = [{"input_ids": i, "attention_mask": m, "labels": y}
                     for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
        self.prepare_s = time.perf_counter() - t0
        timer, contender = self.timer, self

        class Pause(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                timer.step()
                if state.global_step % contender.chunk == 0 and state.global_step < contender.steps:
                    control.should_save = True
                    control.should_training_stop = True
        self.callback = Pause()
        self.args = TrainingArguments(
            output_dir=str(self.work), per_device_train_batch_size=BATCH, max_steps=steps,
            learning_rate=LR[method], lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, logging_strategy="no", save_strategy="no", report_to=[], seed=0,
            use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, bf16=bf16,
            # transformers 5 spells group_by_length=True this way; fused AdamW is its default optimiser
            train_sampling_strategy="group_by_length" if best else "random", optim="adamw_torch_fused")
        self.collator = DataCollatorWithPadding(self.tok) if best else None
        torch.manual_seed(0)
        self.model = self._model()
        self.trainer = None
        self.done = 0

    def _model(self):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(self.dir, num_labels=2)
        if self.method == "lora":
            import peft

            model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                                               target_modules=["query", "value"]))
        return model

    def run_chunk(self):
        """Train up to the next chunk boundary."""
        from accelerate.state import AcceleratorState
        from transformers import Trainer

        # accelerate keeps one process-wide state whose mixed precision cannot change: without
        # this reset a bf16 Trainer after an fp32 one in the same process raises ValueError
        AcceleratorState._reset_state(reset_partial_state=True)
        trainer = Trainer(model=self.model, args=self.args, train_dataset=self.data, data_collator=self.collator,
                          callbacks=[self.callback])
        ckpts = sorted(self.work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        self.timer.start_chunk()
        trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
        self.trainer = trainer
        self.done += self.chunk

    def accuracy(self, dev) -> float:
        """SST-2 dev accuracy of the trained model."""
        import torch

        texts, labels = dev
        model = self.trainer.model.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                enc = self.tok(texts[i:i + 128], truncation=True, max_length=MAX_LEN, padding=True,
                               return_tensors="pt")
                pred = model(**enc).logits.argmax(-1)
                right += int((pred == torch.tensor(labels[i:i + 128])).sum())
        return right / len(texts)


# ---------------------------------------------------------------------------- attnkit
class AttnkitContender:
    """attnkit's Trainer on the equivalent run config, paused and resumed between chunks."""

    def __init__(self, method: str, steps: int, chunk: int, work: Path, bf16: bool = False):
        import torch

        from attnkit.tasks import build_model
        from attnkit.run import resolve_config
        from attnkit.tasks import prepare

        self.name = f"attnkit_{method}" + ("_bf16" if bf16 else "")
        self.method, self.steps, self.chunk, self.timer = method, steps, chunk, Steps()
        finetune = {"method": method, "max_len": MAX_LEN}
        if method == "lora":
            finetune.update(r=8, alpha=16, target_modules=["query", "value"])
        self.cfg = resolve_config({
            "task": "text_classification",
            "data": {"train": str(DATA / "train.tsv"), "dev": str(DATA / "dev.tsv"), "text_column": "sentence"},
            "model": {"pretrained": "minilm", "finetune": finetune},
            "train": {"epochs": 1, "batch_size": BATCH, "max_steps": steps, "grad_clip": 1.0, "seed": 0,
                      "optimizer": {"name": "adamw", "lr": LR[method], "weight_decay": 0.0},
                      "schedule": {"name": "linear", "warmup": 0}, "precision": "bf16" if bf16 else "fp32"}})
        t0 = time.perf_counter()
        self.prepared = prepare(self.cfg)
        self.prepare_s = time.perf_counter() - t0
        torch.manual_seed(0)
        self.model = build_model(self.cfg.task, self.cfg.model, **self.prepared.sizes)
        self.work = work / self.name
        self.started = False

    def run_chunk(self):
        """Train up to the next chunk boundary."""
        from attnkit.evaluate import evaluate_model
        from attnkit.train import Trainer

        def on_step(state):
            self.timer.step()
            return state["step"] % self.chunk == 0

        def evaluate(m, d):
            return evaluate_model(m, d, self.prepared.label_names)
        trainer = Trainer(self.model, self.prepared.train, self.prepared.dev, self.cfg.train, self.work, evaluate,
                          progress=False, on_step=on_step)
        self.timer.start_chunk()
        trainer.fit(resume=self.started)
        self.started = True
        self.trainer = trainer

    def accuracy(self, dev) -> float:
        """SST-2 dev accuracy after the last chunk (the trainer's end-of-run evaluation)."""
        return self.trainer.state["history"][-1]["dev"]["accuracy"]


# ---------------------------------------------------------------------------- main
def summarize(c, warmup: int) -> dict:
    """Per chunk, after warm-up: samples/s from the median step time (the issue's measure)
    and from all steps (samples / total time: the one FLOP counts can be divided by, since
    length-bucketed batches make the median step a shorter-than-average batch), and the
    warm-up time of the first chunk."""
    timed = [ch[warmup:] for ch in c.timer.chunks]
    return {"warmup_s": sum(c.timer.chunks[0][:warmup]),
            "median": [BATCH / statistics.median(t) for t in timed],
            "mean": [BATCH * len(t) / sum(t) for t in timed]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", choices=["full", "lora"], action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bf16 contenders (auto: only on a CPU with bf16 units)")
    ap.add_argument("--quick", action="store_true", help="smoke run: LoRA only, 12 steps in 2 rounds, warm-up 2")
    ap.add_argument("--out", help="results file (default benchmarks/results/finetune_speed.json)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds, args.warmup, args.only = 12, 2, 2, args.only or ["lora"]
    import torch

    torch.set_num_threads(args.threads)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and has_bf16_units())
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs SST-2 from ../shared/data")
    peak = matmul_rate()
    print(f"fp32 matmul: {peak:.1f} GFLOP/s", flush=True)
    train, dev = read_sst2("train"), read_sst2("dev")
    chunk = args.steps // args.rounds
    steps = chunk * args.rounds
    work = Path(tempfile.mkdtemp(prefix="attnkit-ftspeed-"))
    rows, notes = [], []
    try:
        for method in args.only or ["full", "lora"]:
            contenders = [HFContender(f"hf_maxlen_{method}", method, False, train, steps, chunk, work),
                          HFContender(f"hf_best_{method}", method, True, train, steps, chunk, work),
                          AttnkitContender(method, steps, chunk, work)]
            if bf16:
                contenders += [HFContender(f"hf_best_{method}_bf16", method, True, train, steps, chunk, work, True),
                               AttnkitContender(method, steps, chunk, work, bf16=True)]
            pieces = [len(x) for x in contenders[2].prepared.train.tokens]
            flops = model_flops_per_sample(pieces, method)
            ours_model = contenders[2].model
            cls_only = bool(ours_model.encoder.fast and getattr(ours_model, "first_only", False))
            executed = {c.name: executed_flops_per_sample(pieces, method, cls_only and c.name.startswith("attnkit"))
                        for c in contenders}
            padded = 1 - sum(pieces) / (len(pieces) * MAX_LEN)
            for r in range(args.rounds):
                k = r % len(contenders)
                for c in contenders[k:] + contenders[:k]:  # round r starts with contender r mod n
                    t0 = time.perf_counter()
                    c.run_chunk()
                    timed = c.timer.chunks[-1][args.warmup:]
                    print(f"{method} round {r + 1}: {c.name} {time.perf_counter() - t0:.1f} s, "
                          f"{BATCH * len(timed) / sum(timed):.1f} samples/s", flush=True)
            stats = {c.name: summarize(c, args.warmup) for c in contenders}
            accs = {c.name: c.accuracy(dev) for c in contenders}
            for c in contenders:
                ours_name = f"attnkit_{method}" + ("_bf16" if c.name.endswith("_bf16") else "")
                ours = stats[ours_name]
                s = stats[c.name]
                sps = statistics.median(s["mean"])
                rows.append(row(c.name, "samples_per_s", round(sps, 1), None, "higher",
                                per_round=[round(x, 1) for x in s["mean"]],
                                median_step_samples_per_s=round(statistics.median(s["median"]), 1),
                                warmup_s=round(s["warmup_s"], 2), prepare_s=round(c.prepare_s, 1),
                                mfu=round(sps * flops / (peak * 1e9), 3),
                                mfu_executed=round(sps * executed[c.name] / (peak * 1e9), 3),
                                dev_accuracy=round(accs[c.name], 4), steps=steps))
                if c.name.startswith("hf"):
                    target = 1.2 if "best" in c.name else 4.0
                    for kind, label in (("mean", "speedup"), ("median", "speedup_median_step")):
                        ratios = [a / b for a, b in zip(ours[kind], s[kind])]
                        rows.append(row(f"attnkit_vs_{c.name}", label, round(statistics.median(ratios), 3),
                                        target, "higher", "x", per_round=[round(x, 3) for x in ratios]))
                    if "best" in c.name:
                        rows.append(row(f"attnkit_vs_{c.name}", "dev_accuracy_gap_points",
                                        round(100 * (accs[c.name] - accs[ours_name]), 2), 0.5, "lower"))
            if bf16:  # what bf16 gains each of them over its own fp32
                for fp32, b16 in ((f"hf_best_{method}", f"hf_best_{method}_bf16"),
                                  (f"attnkit_{method}", f"attnkit_{method}_bf16")):
                    ratios = [a / b for a, b in zip(stats[b16]["mean"], stats[fp32]["mean"])]
                    rows.append(row(b16, "bf16_gain_over_fp32", round(statistics.median(ratios), 3), None, "higher",
                                    "x", dev_accuracy_change_points=round(100 * (accs[b16] - accs[fp32]), 2)))
            else:
                why = ("not measured: this CPU has no bf16 units (no amx_bf16/avx512_bf16 in /proc/cpuinfo); "
                       "bf16 would run emulated, several times slower than fp32" if not has_bf16_units()
                       else "not measured: --bf16 off")
                rows.append(row(f"attnkit_vs_hf_best_{method}_bf16", "speedup", None, 1.2, "higher", "x", note=why))
            if method == "full":  # the target is checked on the FLOPs attnkit executes, not the model count
                sps = statistics.median(stats["attnkit_full"]["mean"])
                rows.append(row("attnkit_full", "mfu_executed", round(sps * executed["attnkit_full"] / (peak * 1e9), 3),
                                0.65, "higher", flops="executed (last layer for [CLS] only, pooler on [CLS])"))
                rows.append(row("attnkit_full", "mfu", round(sps * flops / (peak * 1e9), 3), None, "higher",
                                flops="model (the full model at every piece; not what attnkit executes)"))
            notes.append(f"{method}: {sum(pieces) / len(pieces):.1f} pieces per example on average; padding to "
                         f"{MAX_LEN} makes {100 * padded:.0f}% of hf_maxlen's tokens padding; model FLOPs per "
                         f"example {flops / 1e6:.1f} MFLOP (full model: mfu); executed FLOPs per example "
                         f"{executed[f'attnkit_{method}'] / 1e6:.1f} MFLOP for attnkit "
                         f"({'last layer for [CLS] only' if cls_only else 'every layer in full'}), "
                         f"{executed[f'hf_best_{method}'] / 1e6:.1f} MFLOP for the HF Trainer (mfu_executed)")
            for r in rows:
                if r["name"].endswith(method) or method in r["name"]:
                    print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes.append(f"fp32 matmul rate (2048^3, median of 7): {peak:.1f} GFLOP/s")
    notes.append("mfu: model FLOPs of the full model (every layer at every real piece, pooler counted per piece: "
                 "2 x non-embedding weights x pieces + 4 x layers x pieces^2 x width, forward; x3 full, x2 LoRA). "
                 "mfu_executed: what each contender executes on the real pieces: per layer 4 w^2 n (K, V) + "
                 "(4 w^2 + 4 w ff) q (Q, output, feed-forward) + 4 q n w (scores, mixing) with q = n, except "
                 "attnkit's last layer with q = 1 ([CLS] only); pooler 2 w^2 once; same backward factors. "
                 "Padding positions are not counted for anyone. The MFU target (0.65) is checked on mfu_executed")
    notes.append("round r starts with contender r mod n (the order rotates every round)")
    write_results("finetune_speed", rows, notes, args.out)


if __name__ == "__main__":
    main()
