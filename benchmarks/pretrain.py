"""Masked-LM pretraining of attnkit's own Transformer encoder, then SST-2 fine-tuning from it
(issue "Training methods", item 1): examples/pretrain_mlm.yaml (IMDb's 50,000 reviews and
SST-2's training sentences, no labels) then examples/sst2_pretrained_transformer.yaml
(``model.init_from`` the pretraining run).

    python benchmarks/pretrain.py [--work DIR] [--reuse] [--scratch]

Targets: SST-2 dev accuracy >= 0.85 (the SST-2 Transformer from scratch, examples/sst2_transformer.yaml,
scores 0.822 in benchmarks/results/quality.json) with pretraining plus fine-tuning <= 90 minutes
on this machine. The MLM loss curve (train loss every 250 steps, from metrics.jsonl) is kept in
the results beside log(vocabulary) and the unigram loss, the two yardsticks of "learnt
nothing". ``--scratch`` also trains the fine-tuning config's very architecture from random
weights with the same recipe, on words (a vocabulary from SST-2's training split)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, timed_train, write_results

ROOT = Path(__file__).resolve().parent.parent
PRETRAIN = ROOT / "examples" / "pretrain_mlm.yaml"
FINETUNE = ROOT / "examples" / "sst2_pretrained_transformer.yaml"
SCRATCH_REFERENCE = 0.8222  # examples/sst2_transformer.yaml, benchmarks/results/quality.json


def loss_curve(run: Path) -> list[dict]:
    """``[{"step", "loss", "window_loss"}]`` from the training records of ``metrics.jsonl``:
    ``loss`` is the epoch's running mean there; ``window_loss`` the mean over the steps since the
    record before (every step has the same batch size, so the running means unroll exactly)."""
    out, before = [], (0, 0.0)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            step, loss = rec["step"], rec["loss"]
            window = (loss * step - before[1] * before[0]) / max(step - before[0], 1)
            out.append({"step": step, "loss": round(loss, 4), "window_loss": round(window, 4)})
            before = (step, loss)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/attnkit-pretrain-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep runs already trained in --work")
    ap.add_argument("--scratch", action="store_true", help="also train the fine-tuning architecture from scratch")
    args = ap.parse_args()
    pre_dir, ft_dir = args.work / "pretrain", args.work / "sst2"
    pre_s = timed_train(str(PRETRAIN), pre_dir, [], args.reuse)
    pre_eval = json.loads((pre_dir / "eval.json").read_text())
    print(f"pretraining: {pre_s / 60:.1f} min, dev {pre_eval['dev']}", flush=True)
    ft_s = timed_train(str(FINETUNE), ft_dir, [f"model.init_from={pre_dir}"], args.reuse)
    acc = json.loads((ft_dir / "eval.json").read_text())["dev"]["accuracy"]
    print(f"fine-tuning: {ft_s / 60:.1f} min, SST-2 dev accuracy {acc:.4f}", flush=True)
    dev = pre_eval["dev"]
    total = (pre_s + ft_s) / 60
    rows = [
        row("pretrained + fine-tuned Transformer: SST-2 dev accuracy", "accuracy", round(acc, 4), 0.85, "higher",
            from_scratch_reference=SCRATCH_REFERENCE),
        row("pretraining + fine-tuning wall time", "minutes", round(total, 1), 90.0, "lower", unit="min",
            pretraining_min=round(pre_s / 60, 1), finetuning_min=round(ft_s / 60, 1)),
        row("masked-LM dev loss after pretraining (nats per masked piece)", "mlm_loss", round(dev["mlm_loss"], 4),
            round(dev["unigram_loss"], 4), "lower", uniform_loss=round(dev["uniform_loss"], 4),
            unigram_loss=round(dev["unigram_loss"], 4), masked_accuracy=round(dev["masked_accuracy"], 4),
            perplexity=round(dev["perplexity"], 2), curve=loss_curve(pre_dir),
            warning=pre_eval.get("warning")),
        row("SST-2 Transformer from scratch (examples/sst2_transformer.yaml, quality.json)", "accuracy",
            SCRATCH_REFERENCE, None, "higher"),
    ]
    if args.scratch:
        sc_dir = args.work / "scratch"
        pre_model = json.loads(json.dumps(_model_options(pre_dir)))
        overrides = ["model.init_from=null", f"model.embedding={json.dumps(pre_model['embedding'])}",
                     f"model.encoder={json.dumps(pre_model['encoder'])}"]
        sc_s = timed_train(str(FINETUNE), sc_dir, overrides, args.reuse)
        sc = json.loads((sc_dir / "eval.json").read_text())["dev"]["accuracy"]
        rows.append(row("the same architecture and recipe from scratch (words): SST-2 dev accuracy", "accuracy",
                        round(sc, 4), None, "higher", minutes=round(sc_s / 60, 1)))
    notes = ["target (issue 'Training methods' item 1): >= 0.85 SST-2 dev after pretraining, pretraining plus "
             "fine-tuning <= 90 minutes here",
             "the masked-LM row's target is the unigram loss: below it, the encoder predicts from context",
             "a first attempt (2026-12-01, same recipe without model.encoder.input_scale, 3,000 steps planned) was "
             "stopped after 1,000 steps: the loss sat at the unigram level (mean of steps 500-1000: 7.33 nats; "
             "unigram 7.22, log(8000) 8.99), the failure the issue warns about. Cause: the sinusoidal positions "
             "(norm ~11 at width 256) drown the word vectors (norm ~1.6 at init); scaling the input by sqrt(256) "
             "= 16 (Vaswani et al.) fixed it: 6.75 dev loss after 300 steps in a short check",
             "the accuracy target is missed: one pass over the 20M pieces (3,263 steps of 64 x 128) is what 51 "
             "minutes of 2 cores buy, and it leaves a weak language model (6.57 nats, 13.5% of masked pieces right); "
             "fine-tuning gains 1.15 points over the from-scratch Transformer and overfits after epoch 2"]
    if args.reuse:
        notes.append("--reuse: runs already in --work were kept (their training time recorded when they trained)")
    print(f"wrote {write_results('pretrain', rows, notes)}")


def _model_options(run: Path) -> dict:
    from attnkit.config import load_yaml

    return load_yaml(run / "config.yaml")["model"]


if __name__ == "__main__":
    main()
