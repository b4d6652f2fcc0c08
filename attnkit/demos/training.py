"""``attnkit demo``: train a real model on the embedded ``toy_sentiment`` data (no download):
embedding -> BiLSTM -> additive attention pooling -> classifier, then show the evaluation,
what the model attends to in a few dev sentences, and where the run directory is."""
from __future__ import annotations

import time
from pathlib import Path

from ..evaluate import print_metrics
from ..explain import explain
from ..explain.render import tokens_rich
from ..run import train

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


def run_training_demo(console, out: str | Path | None = None, epochs: int | None = None) -> Path:
    """Train, evaluate, explain; returns the run directory."""

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
    for e in explain(out, EXAMPLES, method="attention"):
        console.print(f"{e.label:>8} {e.probability:.2f}  ", tokens_rich(e.tokens, e.scores), highlight=False)
        top = sorted(zip(e.scores.tolist(), e.tokens), reverse=True)[:3]
        console.print("                most weight on: " + ", ".join(f"{t} {x:.2f}" for x, t in top), highlight=False)
    console.print(f"\nrun directory: {out}\n  report: {out / 'report.html'} (curves, metrics, confusion matrix, "
                  f"explained dev examples)\n  try: attnkit predict {out} \"a dull , clumsy film\"\n"
                  f"       attnkit explain {out} \"a dull , clumsy film\" --method ig", highlight=False)
    return out
