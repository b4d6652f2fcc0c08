"""The monitor's dashboard: one self-contained HTML file (figures as PNG data URIs, no scripts,
no links out): the sentiment index of each entity over time with its band and alert markers,
the drift panel, and every alert with its texts shaded by what the model attended to."""
from __future__ import annotations

import html
from pathlib import Path

from ..explain.render import figure_uri, page, pyplot, tokens_html
from ..files import atomic_write

MAX_ENTITIES = 24


def _index_figure(entity: str, points: list[dict], alerts: list[dict]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 2.6), dpi=90)
    x = list(range(len(points)))
    ax.fill_between(x, [p["low"] for p in points], [p["high"] for p in points], color="#9ecae1", alpha=0.5,
                    linewidth=0, label="95% band")
    ax.plot(x, [p["index"] for p in points], color="#08519c", linewidth=1.4, label="index")
    where = {p["period"]: i for i, p in enumerate(points)}
    for a in alerts:
        if a["period"] in where:
            i = where[a["period"]]
            ax.scatter([i], [points[i]["index"]], marker="v" if a["direction"] == "down" else "^", s=90,
                       color="#cb181d", zorder=5)
            if a.get("since") in where:
                ax.axvspan(where[a["since"]] - 0.5, i + 0.5, color="#fcbba1", alpha=0.4, linewidth=0)
    ticks = x[:: max(1, len(x) // 8)]
    ax.set_xticks(ticks, [points[i]["period"] for i in ticks], fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="#888", linewidth=0.6)
    ax.set_title(f"{entity}: sentiment index (share positive - share negative)", fontsize=9)
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _drift_figure(drift: list[dict], psi_limit: float, alerts: list[dict]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 2.6), dpi=90)
    x = list(range(len(drift)))
    for name in drift[0]["features"]:
        ax.plot(x, [d["features"][name]["psi"] for d in drift], linewidth=1.2, label=name)
    ax.plot(x, [d["class_mix"]["psi"] for d in drift], linewidth=1, linestyle=":", color="#555",
            label="class mix (not alerting)")
    ax.axhline(psi_limit, color="#cb181d", linewidth=0.8, linestyle="--", label=f"PSI {psi_limit:g}")
    where = {d["period"]: i for i, d in enumerate(drift)}
    for a in alerts:
        if a["period"] in where:
            ax.axvline(where[a["period"]], color="#cb181d", alpha=0.25, linewidth=3)
    ticks = x[:: max(1, len(x) // 8)]
    ax.set_xticks(ticks, [drift[i]["period"] for i in ticks], fontsize=7)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_title("model health: PSI of each period against the reference", fontsize=9)
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=3)
    fig.tight_layout()
    return fig


def _alert_html(a: dict) -> str:
    if a["kind"] == "sentiment":
        head = (f"<b>{html.escape(a['entity'])}</b> {a['period']}: sentiment turned <b>{a['direction']}</b> since "
                f"{a['since']} (index {a['index_before']:+.2f} &rarr; {a['index_since']:+.2f}; {a['detector']} "
                f"{a['statistic']})")
    else:
        feats = ", ".join(f"{k} PSI {v['psi']:.2f}" for k, v in a["features"].items())
        head = f"<b>drift</b> {a['period']}: the stream stopped looking like the reference ({feats}; {a['n']} texts)"
    items = "".join(f"<li>{tokens_html(t['tokens'], t['scores'])} <span class=note>({html.escape(t['label'])}, "
                    f"{t['confidence']:.2f}, {t['time']})</span></li>" for t in a.get("texts", []))
    return f"<div class=alert><p>{head}</p><ul>{items}</ul></div>"


def write_dashboard(path: Path, mon, summary) -> Path:
    """Write the dashboard of ``mon`` (a :class:`Monitor`) after ``summary``; returns ``path``."""
    sentiment = [a for a in summary.alerts if a["kind"] == "sentiment"]
    drift_alerts = [a for a in summary.alerts if a["kind"] == "drift"]
    parts = [f"<p>{summary.total_texts:,} texts from {html.escape(str(mon.stream))}, scored by "
             f"{html.escape(str(mon.run_dir))}; index per {mon.settings.period}; detector {mon.settings.detector} "
             f"(sensitivity {mon.settings.sensitivity:g}); {len(sentiment)} sentiment alert(s), "
             f"{len(drift_alerts)} drift alert(s).</p>"]
    entities = sorted(summary.index)  # by name; with more than fit, the largest by text count
    if len(entities) > MAX_ENTITIES:
        entities.sort(key=lambda e: -sum(p["n"] for p in summary.index[e]))
    parts.append("<h2>Sentiment index</h2>")
    for entity in entities[:MAX_ENTITIES]:
        fig = _index_figure(entity, summary.index[entity], [a for a in sentiment if a["entity"] == entity])
        parts.append(f'<img alt="index {html.escape(entity)}" src="{figure_uri(fig)}">')
    if len(entities) > MAX_ENTITIES:
        parts.append(f"<p class=note>{len(entities) - MAX_ENTITIES} smaller entities not drawn (in alerts.jsonl and "
                     f"the state).</p>")
    parts.append("<h2>Model health</h2>")
    if summary.drift:
        fig = _drift_figure(summary.drift, mon.settings.psi_limit, drift_alerts)
        parts.append(f'<img alt="drift" src="{figure_uri(fig)}">')
        parts.append("<p class=note>features: confidence (top probability), words (length), unknown (share of unknown "
                     "ids), pieces (model positions per word); an alert needs PSI over the line and a test p-value "
                     "below 0.0001.</p>")
    else:
        parts.append("<p>No reference to compare with (give --reference FILE).</p>")
    parts.append("<h2>Alerts</h2>")
    parts.append("".join(_alert_html(a) for a in reversed(summary.alerts)) or "<p>None.</p>")
    style = ("<style>.alert{border-left:4px solid #cb181d;padding:2px 10px;margin:8px 0}"
             ".tok{padding:1px 2px;border-radius:3px}.note{color:#666;font-size:90%}img{max-width:100%}</style>")
    body = style + "".join(parts)
    atomic_write(path, lambda f: f.write(page(f"attnkit monitor: {mon.stream.name}", body).encode("utf-8")))
    return path
