"""``attnkit demo``: train a real model on the embedded ``toy_sentiment`` data (no download):
embedding -> BiLSTM -> additive attention pooling -> classifier, then show the evaluation,
what the model attends to in a few dev sentences, and where the run directory is."""
from __future__ import annotations

import time
from pathlib import Path

import torch

DEMO_CONFIG = {
    "task": "text_classification",
    "name": "demo",
    "data": {"builtin": "toy_sentiment"},
    "model": {"embedding": {"dim": 64, "dropout": 0.1},
              "encoder": {"type": "lstm", "hidden": 64, "bidirectional": True},
              "pooler": {"type": "attention", "score": "additive"},
              "head": {"dropout": 0.1}},
    "train": {"epochs": 4, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
              "schedule": {"name": "linear", "warmup": 0.1}, "seed": 0},
}
EXAMPLES = [
    "the acting was not good",
    "honestly , the plot was dull , but the ending was brilliant",
    "a truly charming film",
]


def _heat(console, tokens: list[str], weights: list[float]) -> None:
    top = max(weights) or 1.0
    parts = []
    for t, w in zip(tokens, weights):
        level = int(255 - 155 * w / top)
        parts.append(f"[on rgb(255,{level},{level})] {t} [/]")
    console.print("".join(parts), highlight=False)


def run_training_demo(console, out: str | Path | None = None, epochs: int | None = None) -> Path:
    """Train, evaluate, explain; returns the run directory."""
    from ..evaluate.report import print_metrics
    from ..run import load_run, predict, train

    cfg = {**DEMO_CONFIG, "train": {**DEMO_CONFIG["train"], **({"epochs": epochs} if epochs else {})}}
    out = Path(out) if out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    console.print("[bold]attnkit demo[/]: embedding -> BiLSTM -> additive attention pooling -> classifier, "
                  "trained on the embedded toy_sentiment set (2,000 train / 500 dev / 500 test sentences; "
                  "'not' and '..., but ...' make word order matter)\n", highlight=False)
    t0 = time.perf_counter()
    result = train(cfg, out=out)
    console.print(f"\ntrained in {time.perf_counter() - t0:.1f} s", highlight=False)
    print_metrics(console, result.test, "test")
    console.print("\n[bold]what the attention pooler reads[/] (darker = more weight; BiLSTM states carry "
                  "their context, so one position can stand for a phrase):", highlight=False)
    run = load_run(out)
    vocab = run.vocabs["vocab.json"]
    for text, pred in zip(EXAMPLES, predict(out, EXAMPLES)):
        words = text.split()
        batch = {"tokens": torch.tensor([vocab.encode(words)]), "lengths": torch.tensor([len(words)])}
        with torch.no_grad():
            w = run.model(batch, need_weights=True)["attention"][0, 0].tolist()
        console.print(f"{pred['label']:>8} {max(pred['scores'].values()):.2f}  ", end="", highlight=False)
        _heat(console, words, w)
        top = sorted(zip(w, words), reverse=True)[:3]
        console.print("                most weight on: " + ", ".join(f"{t} {x:.2f}" for x, t in top), highlight=False)
    console.print(f"\nrun directory: {out}  (try: attnkit predict {out} \"a dull , clumsy film\")",
                  highlight=False)
    return out
