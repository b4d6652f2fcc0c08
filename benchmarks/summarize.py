"""Print a results file as Markdown: ``python benchmarks/summarize.py attention``.

Targets first (with OK / MISS), then every measurement, so docs quote the file verbatim."""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(v) -> str:
    """Numbers to 3 significant digits; None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def main(name: str = "attention") -> None:
    """Print ``results/NAME.json`` as Markdown tables."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    m = data["machine"]
    print(f"`{data['command']}` — {data['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}\n")
    print("| row | metric | value | target | meets |\n|---|---|---|---|---|")
    for r in data["rows"]:
        if r["metric"] != "measurement":
            meets = "" if r.get("target") is None else ("OK" if r.get("meets") else "**MISS**")
            print(f"| {r['name']} | {r['metric']} | {fmt(r['value'])}{r.get('unit', '')} | {fmt(r.get('target'))} | {meets} |")
    measured = [r for r in data["rows"] if r["metric"] == "measurement"]
    if measured:
        print("\n| case / contender | fwd ms | fwd+bwd ms | fwd peak MiB | fwd+bwd peak MiB |\n|---|---|---|---|---|")
    for r in measured:
        print(f"| {r['name']} | {fmt(r.get('fwd_ms'))} | {fmt(r.get('fwdbwd_ms'))} | "
              f"{fmt(r.get('fwd_peak_mb'))} | {fmt(r.get('fwdbwd_peak_mb'))} |")
    for note in data.get("notes", []):
        print(f"\n- {note}", end="")
    print()


if __name__ == "__main__":
    main(*sys.argv[1:])
