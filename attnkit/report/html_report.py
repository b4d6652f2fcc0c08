"""``RUN/report.html``: one self-contained page per run (inline CSS, images as PNG data URIs,
no scripts or links), so it opens anywhere, offline.

Sections: summary, config, training curves (``metrics.jsonl``), final metrics with the
per-class table (``eval.json``), confusion matrix, the out-of-scope threshold's curve
(``out_of_scope.json``, written by ``attnkit tune-oos``), a gallery of right and wrong dev examples
with their token heatmaps (attention and gradient x input) or saliency overlays (images), and
the attention of one example per layer x head."""
from __future__ import annotations

import datetime as _dt
import html
import random
from pathlib import Path

import numpy as np

from .. import __version__
from ..explain import ExplainError, encode_inputs, explain_encoded
from ..explain.explanations import black_level
from ..explain.render import (
    SHADING_NOTE,
    alignment_figure,
    attention_grid_figure,
    figure_uri,
    image_overlay_figure,
    page,
    pooling_figure,
    pyplot,
    tokens_html,
)
from ..files import atomic_write
from ..models import count_parameters
from ..rundir import LoadedRun, load_run, read_eval
from ..tasks import predict_encoded

HEADLINE = ("accuracy", "macro_f1", "f1", "precision", "recall", "token_accuracy", "in_scope_accuracy", "oos_recall",
            "loss", "n")


def _img(uri: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{uri}">'


def curves_section(run: LoadedRun, metric: str) -> str:
    """Training loss per logged step, dev loss and dev metrics per epoch."""
    records = run.files.read_metrics()
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not train and not epochs:
        return "<p class=muted>no metrics.jsonl records</p>"
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    if train:
        a.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train loss (logged steps)")
    if epochs:
        a.plot([r["step"] for r in epochs], [r.get("train_loss") for r in epochs], "o-", label="train loss (epoch)")
        if "dev_loss" in epochs[0]:
            a.plot([r["step"] for r in epochs], [r["dev_loss"] for r in epochs], "s-", label="dev loss")
    a.set_xlabel("step")
    a.set_title("loss", fontsize=9)
    a.legend(fontsize=7)
    shown = [k for k in (f"dev_{metric}", "dev_accuracy", "dev_macro_f1", "dev_f1", "dev_in_scope_accuracy")
             if epochs and k in epochs[0]]
    for k in dict.fromkeys(shown):
        b.plot([r["epoch"] for r in epochs], [r[k] for r in epochs], "o-", label=k)
    b.set_xlabel("epoch")
    if epochs:  # whole epochs only (one epoch would otherwise get ticks like 0.5, 1.5)
        b.set_xticks(sorted({int(r["epoch"]) for r in epochs}))
    b.set_title("dev metrics", fontsize=9)
    if shown:
        b.legend(fontsize=7)
    return _img(figure_uri(fig), "training curves")


def out_of_scope_section(run: LoadedRun) -> str:
    """In-scope accuracy against out-of-scope recall as the confidence threshold moves (dev and
    test), with the tuned threshold marked; empty when the run has no ``out_of_scope.json``."""
    import json

    path = run.files.out_of_scope
    if not path.is_file():
        return ""
    try:
        oos = json.loads(path.read_text(encoding="utf-8"))
        curves = {k: np.array(v) for k, v in oos["curves"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"<p class=muted>{html.escape(path.name)} is damaged: run attnkit tune-oos again</p>"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for split, rows in curves.items():
        if rows.ndim == 2 and len(rows):
            ax.plot(rows[:, 2], rows[:, 1], "-", lw=1.5, label=split)
    for split, marker in (("dev", "o"), ("test", "s")):
        if split in oos:
            m = oos[split]
            ax.plot([m["oos_recall"]], [m["in_scope_accuracy"]], marker, ms=8,
                    label=f"{split} at threshold {oos['threshold']:.3f}")
            u = m.get("untuned")
            if u:
                ax.plot([u["oos_recall"]], [u["in_scope_accuracy"]], "x", ms=8, color="gray")
    ax.set_xlabel("out-of-scope recall")
    ax.set_ylabel("in-scope accuracy")
    ax.set_title(f"confidence score {oos.get('score')}; x: untuned", fontsize=9)
    ax.legend(fontsize=7)
    rows = "".join(f"<tr><td>{split}</td><td>{oos[split]['in_scope_accuracy']:.4f}</td><td>{oos[split]['oos_recall']:.4f}"
                   f"</td><td>{oos[split]['untuned']['in_scope_accuracy']:.4f}</td>"
                   f"<td>{oos[split]['untuned']['oos_recall']:.4f}</td></tr>" for split in ("dev", "test") if split in oos)
    table = ("<table><tr><th></th><th>in-scope accuracy</th><th>out-of-scope recall</th><th>untuned accuracy</th>"
             f"<th>untuned recall</th></tr>{rows}</table>")
    return "<h2>Out-of-scope threshold</h2>" + _img(figure_uri(fig), "out-of-scope curve") + table


def _headline_keys(ev: dict) -> list[str]:
    """The scores to show: the usual headline ones, then any other number a task reports."""
    splits = [ev.get(s) or {} for s in ("dev", "test")]
    present = [k for k in HEADLINE if any(k in m for m in splits)]
    if set(present) - {"loss", "n"}:
        return present
    others = sorted({k for m in splits for k, v in m.items() if isinstance(v, (int, float)) and k not in HEADLINE})
    return others + present  # another task's own scores (mse, mae ...)


def _headline_table(ev: dict) -> str:
    keys = _headline_keys(ev)
    rows = []
    for split in ("dev", "test"):
        m = ev.get(split)
        if m:
            cells = "".join(f"<td>{m[k]:.4f}</td>" if isinstance(m.get(k), float) else f"<td>{m.get(k, '')}</td>"
                            for k in keys)
            rows.append(f"<tr><td>{split}</td>{cells}</tr>")
    heads = "".join(f"<th>{k}</th>" for k in keys)
    return f"<table><tr><th>split</th>{heads}</tr>{''.join(rows)}</table>"


def _per_class_table(m: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(name))}</td><td>{s['precision']:.4f}</td><td>{s['recall']:.4f}</td>"
                   f"<td>{s['f1']:.4f}</td><td>{s['support']}</td></tr>" for name, s in m.get("per_class", {}).items())
    return ("<div style=\"max-height:28em;overflow:auto\"><table><tr><th>class</th><th>precision</th><th>recall</th>"
            f"<th>f1</th><th>support</th></tr>{rows}</table></div>")


def metrics_section(ev: dict) -> str:
    """Headline dev/test scores and the per-class table of the dev (else test) split."""
    if not ev:
        return "<p class=muted>no eval.json</p>"
    m = ev.get("dev") or ev.get("test") or {}
    best = f"<p>best epoch (by the dev metric): {ev.get('best_epoch')}</p>" if ev.get("best_epoch") else ""
    return best + _headline_table(ev) + "<h3>per class (dev)</h3>" + _per_class_table(m)


def confusion_section(ev: dict) -> str:
    """The dev confusion matrix (counts in the cells when there are few classes)."""
    cm = (ev.get("dev") or {}).get("confusion_matrix")
    if not cm:
        return "<p class=muted>no confusion matrix (this task's metrics are not per class pair)</p>"
    labels, mat = cm["labels"], np.asarray(cm["matrix"])
    n = len(labels)
    plt = pyplot()
    size = min(3 + 0.35 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(mat, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        size = 10 if n <= 12 else 8  # readable at the page's width (the figure grows with n)
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=size)
        ax.set_yticklabels(labels, fontsize=size)
    if n <= 15:
        top = mat.max() or 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if mat[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _img(figure_uri(fig), "confusion matrix")


def _gallery_item(run: LoadedRun, enc, gold, pred, klass: str) -> tuple[str, object]:
    """One example's block (``pred``: the task's prediction from the batched path)."""
    fz, task = run.featurized, run.task
    align = task.alignment(run.model, enc, pred, fz)
    if align is not None:  # a translation: what each written word attended to
        head = task.example_html(enc, pred, gold, fz)
        return f'<div class="ex {klass}">{head}{_img(figure_uri(alignment_figure(*align)), "alignment")}</div>', None
    if task.explain_refusal:  # the task's own heading only
        return f'<div class="ex {klass}">{task.example_html(enc, pred, gold, fz)}</div>', None
    word = task.explain_word(pred, gold, fz)
    try:
        sal = explain_encoded(run.model, enc, "saliency", fz.labels, word=word, black=black_level(run))
    except ExplainError as e:  # e.g. a dev text longer than explanations take: shown without one
        head = task.example_html(enc, pred, gold, fz)
        return f'<div class="ex {klass}">{head}<p class=muted>not explained: {html.escape(str(e))}</p></div>', None
    try:
        att = explain_encoded(run.model, enc, "attention", fz.labels, word=word)
    except ExplainError:
        att = None
    head = task.example_html(enc, pred, gold, fz)
    if enc.image is not None:
        figs = [_img(figure_uri(image_overlay_figure(enc.image, sal.scores, f"saliency: {sal.label}")), "saliency")]
        if att is not None:
            figs.append(_img(figure_uri(image_overlay_figure(enc.image, att.scores, "attention")), "attention"))
        return f'<div class="ex {klass}">{head}<br>{"".join(figs)}</div>', att or sal
    if sal.word is not None:
        head += f"<p class=muted>explaining the tag of word {sal.word} ({html.escape(sal.target)})</p>"
    rows = f"<p>gradient x input: {tokens_html(sal.tokens, sal.scores)}</p>"
    if att is not None:
        rows = f"<p>attention: {tokens_html(att.tokens, att.scores)}</p>" + rows
    return f'<div class="ex {klass}">{head}{rows}</div>', att or sal


def gallery_section(run: LoadedRun, examples: int, sample: int, seed: int) -> tuple[str, object | None]:
    """Right and wrong dev examples with their explanations, and one explanation to draw the
    attention of (the first example shown)."""
    task, fz = run.task, run.featurized
    try:  # the data files again, with the run's seeds, so held-out splits are the same
        inputs, gold = task.examples(task.read_splits(run.cfg)[1])
    except Exception as e:  # noqa: BLE001  (data moved or gone: the rest of the report still stands)
        return f"<p class=muted>dev data not readable ({html.escape(str(e))}): no gallery</p>", None
    if not inputs or examples == 0:
        return "<p class=muted>no dev examples</p>", None
    order = list(range(len(inputs)))
    random.Random(seed).shuffle(order)
    chosen = order[:sample]
    encoded = encode_inputs(run, [inputs[i] for i in chosen])
    preds = predict_encoded(run.model, task, encoded)
    right, wrong = [], []
    for i, enc, pred in zip(chosen, encoded, preds):
        (right if task.is_correct(pred, gold[i], fz) else wrong).append((enc, gold[i], pred))
    parts, first = [], None
    for title, items, klass in (("right", right, "right"), ("wrong", wrong, "wrong")):
        parts.append(f"<h3>{title} ({min(len(items), examples)} shown)</h3>")
        for enc, g, pred in items[:examples]:
            block, e = _gallery_item(run, enc, g, pred, klass)
            first = first or e
            parts.append(block)
        if not items:
            parts.append("<p class=muted>none among the sampled dev examples</p>")
    how = (SHADING_NOTE if task.inputs == "text" else "overlay scaled to the image's largest pixel score; green = "
           "for the predicted class, red = against")
    note = f"<p class=muted>from {min(sample, len(inputs))} randomly chosen dev examples (seed {seed}); {how}</p>"
    return note + ("<div class=grid>" if task.inputs == "image" else "<div>") + "\n".join(parts) + "</div>", first


def attention_section(e, aligned: bool = False) -> str:
    """Head x layer attention matrices (or the pooling weights) of one example; ``aligned``:
    the gallery drew each example's attention already (translation, recommendation)."""
    if aligned:
        return "<p class=muted>drawn with each example above: what it attended to</p>"
    if e is None or not e.attention:
        return "<p class=muted>this model computes no attention weights (no attention layer or pooler)</p>"
    out = []
    tokens = e.pieces or e.tokens
    if "layers" in e.attention:
        out.append(_img(figure_uri(attention_grid_figure(np.asarray(e.attention["layers"]), tokens)), "attention grid"))
    if "pooling" in e.attention and e.image is None:
        out.append(_img(figure_uri(pooling_figure(np.asarray(e.attention["pooling"]), tokens)), "pooling weights"))
    if "grid" in e.attention:
        out.append(_img(figure_uri(image_overlay_figure(e.image, e.scores, "pooling attention")), "image attention"))
    text = f"<p>example: {html.escape(' '.join(e.tokens))}</p>" if e.tokens else ""
    return text + "".join(out)


def write_report(run_dir: str | Path, examples: int = 6, sample: int = 200, seed: int = 0) -> Path:
    """Write ``RUN/report.html`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    ev = read_eval(run_dir)
    trainable, total = count_parameters(run.model)
    model = run.cfg.model
    what = (f"pretrained {html.escape(model.pretrained)} ({model.finetune.method})" if model.pretrained else
            " -> ".join(html.escape(str(b.get("type", "default"))) for b in (model.encoder, model.pooler) if b is not None))
    summary = (f"<table class=kv><tr><td>task</td><td>{run.cfg.task}</td></tr><tr><td>model</td><td>{what}</td></tr>"
               f"<tr><td>parameters</td><td>{total:,} ({trainable:,} trainable)</td>"
               f"</tr><tr><td>run directory</td><td>{html.escape(str(run_dir.resolve()))}</td></tr>"
               f"<tr><td>written</td><td>{_dt.datetime.now().isoformat(timespec='seconds')} by attnkit {__version__}"
               f"</td></tr></table>")
    config = html.escape(run.files.config.read_text(encoding="utf-8"))
    gallery, first = gallery_section(run, examples, sample, seed)
    body = "\n".join([
        "<h2>Summary</h2>", summary,
        "<h2>Training curves</h2>", curves_section(run, run.cfg.train.metric),
        "<h2>Final metrics</h2>", metrics_section(ev),
        "<h2>Confusion matrix (dev)</h2>", confusion_section(ev),
        out_of_scope_section(run),
        "<h2>Dev examples</h2>", gallery,
        "<h2>Attention of one example</h2>", attention_section(first, 'alt="alignment"' in gallery),
        "<h2>Config</h2>", f"<pre>{config}</pre>",
    ])
    path = run.files.report
    text = page(f"attnkit run report: {run_dir.name}", body)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path
