"""Explanations drawn for people: coloured tokens in the terminal (rich) and in HTML, and
matplotlib figures (Agg, embedded as PNG data URIs, so pages need no network).

Colours: green = evidence for the explained class, red = against it; for attention (always
>= 0) the same green. Word shading is on an absolute scale: a word's share of the example's
total (``|score| / sum |scores|``), so near-flat attention over n words shades every word
lightly (1/n each) instead of dark, as a per-example maximum would. Image overlays are scaled
to the example's largest pixel score (a pixel's share of thousands would be invisible)."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

POSITIVE = (34, 139, 34)  # forest green
NEGATIVE = (204, 51, 51)


def _scaled(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    top = np.abs(scores).max() if scores.size else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


SHADING_NOTE = ("shade = the word's share of the example's total |score| (absolute: uniform attention over n words "
                "shades each 1/n); green = for the predicted class, red = against; the exact score is in each "
                "tooltip")


def _shares(scores) -> np.ndarray:
    """Each score over the sum of absolute scores (sign kept): an absolute 0-1 shading scale."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.where(np.isfinite(scores), scores, 0.0)
    total = np.abs(scores).sum() if scores.size else 0.0
    return scores / total if total > 0 else np.zeros_like(scores)


def _rgba(value: float) -> str:
    r, g, b = POSITIVE if value >= 0 else NEGATIVE
    return f"rgba({r},{g},{b},{abs(value) * 0.85:.3f})"


def tokens_html(tokens: list[str], scores) -> str:
    """Tokens as ``<span>``s shaded by score (the exact score in each tooltip)."""
    spans = []
    for tok, raw, v in zip(tokens, np.asarray(scores, dtype=np.float64), _shares(scores)):
        spans.append(f'<span class="tok" style="background:{_rgba(v)}" title="{raw:.4g}">{html.escape(tok)}</span>')
    return " ".join(spans)


def tokens_rich(tokens: list[str], scores):
    """Tokens as a rich ``Text`` with background colours by score (for the terminal)."""
    from rich.text import Text

    text = Text()
    for i, (tok, v) in enumerate(zip(tokens, _shares(scores))):
        r, g, b = POSITIVE if v >= 0 else NEGATIVE
        a = abs(v)
        bg = tuple(int(255 - a * (255 - c)) for c in (r, g, b))  # blend towards white
        fg = "white" if a > 0.6 else "black"
        if i:
            text.append(" ")
        text.append(tok, style=f"{fg} on rgb({bg[0]},{bg[1]},{bg[2]})")
    return text


def figure_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def attention_grid_figure(layers: np.ndarray, tokens: list[str], max_tokens: int = 40):
    """``layers [L, heads, T, T]`` as an L x heads grid of heatmaps (queries down, keys across);
    all-NaN cells (heads a pruned layer no longer has) are left empty."""
    plt = pyplot()
    L, H, T, _ = layers.shape
    t = min(T, max_tokens)
    fig, axes = plt.subplots(L, H, figsize=(1.3 * H + 1, 1.3 * L + 0.6), squeeze=False)
    for i in range(L):
        for j in range(H):
            ax = axes[i][j]
            cell = layers[i, j, :t, :t]
            if np.isnan(cell).all():  # a head pruned away in this layer
                ax.axis("off")
                continue
            ax.imshow(cell, cmap="viridis", vmin=0, vmax=max(float(np.nanmax(cell)), 1e-6))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"head {j}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"layer {i}", fontsize=7)
    fig.suptitle(f"attention per layer x head ({t} positions: {' '.join(tokens[:8])}{' ...' if t > 8 else ''})",
                 fontsize=8)
    return fig


def pooling_figure(pooling: np.ndarray, tokens: list[str]):
    """Pooling weights ``[heads, T]`` as a heads x tokens heatmap."""
    plt = pyplot()
    H, T = pooling.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * T + 1), 0.5 * H + 1.2))
    im = ax.imshow(pooling, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="weight")
    ax.set_xticks(range(T))
    ax.set_xticklabels(tokens[:T], rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(H))
    ax.set_yticklabels([f"head {h}" for h in range(H)], fontsize=9)
    ax.set_title(f"attention pooling weights (absolute 0-1 scale; uniform = 1/{T} = {1 / max(T, 1):.3f})",
                 fontsize=9)
    return fig


def alignment_figure(matrix: np.ndarray, target: list[str], source: list[str], title: str = ""):
    """Cross-attention ``[target, source]`` of a translation as a heatmap (rows: the words
    written, columns: the source words they attended to)."""
    plt = pyplot()
    t, s = matrix.shape
    fig, ax = plt.subplots(figsize=(max(3.0, 0.38 * s + 1.5), max(2.5, 0.3 * t + 1.2)))
    im = ax.imshow(matrix, cmap="Greys", aspect="auto", vmin=0, vmax=max(float(matrix.max()), 1e-9))
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="weight")
    ax.set_xticks(range(s))
    ax.set_xticklabels(source[:s], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(t))
    ax.set_yticklabels(target[:t], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    ax.set_title(title or "source-target alignment (cross-attention)", fontsize=9)
    return fig


def image_overlay_figure(image: np.ndarray, scores: np.ndarray, title: str = ""):
    """An image with its per-pixel scores overlaid (green +, red -)."""
    plt = pyplot()
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:  # [C, H, W] -> grey
        image = image.mean(0)
    fig, ax = plt.subplots(figsize=(2.2, 2.4))
    ax.imshow(image, cmap="gray")
    v = _scaled(scores)
    ax.imshow(v, cmap="RdYlGn", vmin=-1, vmax=1, alpha=0.55)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return fig


def explanation_html(explanations, title: str = "attnkit explain") -> str:
    """A standalone page with each explanation (tokens shaded, or an image overlay)."""
    parts = []
    for e in explanations:
        head = (f"<p><b>{html.escape(e.label)}</b> (p={e.probability:.3f}); method <b>{e.method}</b>, "
                f"explaining <b>{html.escape(e.target)}</b>"
                + (f" at word {e.word} ({html.escape(e.tokens[e.word])})" if e.word is not None else "") + "</p>")
        if e.image is not None:
            body = f'<img alt="{e.method}" src="{figure_uri(image_overlay_figure(e.image, e.scores, e.label))}">'
        else:
            body = f'<p class="tokens">{tokens_html(e.tokens, e.scores)}</p>'
        parts.append(f"<div class=\"ex\">{head}{body}</div>")
    if any(e.image is None for e in explanations):
        parts.insert(0, f"<p class=muted>{SHADING_NOTE}</p>")
    return page(title, "\n".join(parts))


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em;max-height:30em}
.tok{padding:.1em .15em;border-radius:3px;line-height:1.9}.ex{margin:.6em 0;padding:.4em .6em;border-left:3px solid #ccc}
.ex.right{border-color:#2a2}.ex.wrong{border-color:#c33}img{max-width:100%}.muted{color:#777;font-size:.9em}
.grid{display:flex;flex-wrap:wrap;gap:.8em}table.kv td{text-align:left}.grid h3{width:100%;margin:.4em 0 0}
"""


def page(title: str, body: str) -> str:
    """A self-contained HTML page (inline CSS, no scripts, no external links)."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
