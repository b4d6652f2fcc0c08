"""Metrics as terminal tables (rich)."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def metrics_table(metrics: dict, title: str = "") -> Table:
    """Headline scores, then per-class precision/recall/F1/support."""
    table = Table(title=title or None, show_header=True, header_style="bold")
    table.add_column("class")
    for col in ("precision", "recall", "f1", "support"):
        table.add_column(col, justify="right")
    for name, s in metrics.get("per_class", {}).items():
        table.add_row(str(name), f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"]))
    if "macro_f1" in metrics:
        table.add_row("[bold]macro[/]", f"{metrics['macro_precision']:.4f}", f"{metrics['macro_recall']:.4f}",
                      f"{metrics['macro_f1']:.4f}", str(metrics.get("n", "")))
    if "f1" in metrics and "macro_f1" not in metrics:
        table.add_row("[bold]entities (micro)[/]", f"{metrics['precision']:.4f}", f"{metrics['recall']:.4f}",
                      f"{metrics['f1']:.4f}", "")
    return table


def print_metrics(console: Console, metrics: dict, title: str = "") -> None:
    """Print a headline line and the per-class table (a multi-task run's: each task's in turn)."""
    tasks = list(dict.fromkeys(k.split("/", 1)[0] for k in metrics if "/" in k))
    if tasks:  # NAME/METRIC keys: one block per task under the shared headline
        head = {k: v for k, v in metrics.items() if "/" not in k}
        print_metrics(console, head, title)
        for name in tasks:
            print_metrics(console, {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{name}/")},
                          f"{title} {name}".strip())
        return
    keys = [k for k in ("accuracy", "f1", "token_accuracy") if k in metrics]
    keys = keys or [k for k, v in metrics.items() if isinstance(v, float) and k != "loss"]  # another task's scores
    head = [f"{k} {metrics[k]:.4f}" for k in [*keys, "loss"] if k in metrics]
    console.print(f"[bold]{title}[/] " + ", ".join(head) if title else ", ".join(head), highlight=False)
    if isinstance(metrics.get("protocol"), str):  # how the scores were measured (a recommender's ranking)
        console.print(f"  [dim]{escape(metrics['protocol'])}[/]", highlight=False)
    if 0 < len(metrics.get("per_class", {})) <= 30:
        console.print(metrics_table(metrics))
