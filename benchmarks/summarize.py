"""Print a results file as Markdown: ``python benchmarks/summarize.py attention`` (or a path).

Targets first (with OK / MISS, the fastest contender of the row and its verdict where the
file has them), then every measurement (median and, where recorded, min-max over the
rounds), so docs quote the file verbatim."""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(v) -> str:
    """Numbers to 3 significant digits (whole numbers from 1000 up); None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def unit(r: dict) -> str:
    """The row's unit as printed after its value: ``1.2x``, ``34.4 MiB``."""
    u = r.get("unit", "")
    return u if u in ("", "x") else f" {u}"


def timed(r: dict, mode: str) -> str:
    """``median (min-max)`` ms of one contender and mode, or the median alone."""
    med, lo, hi = r.get(f"{mode}_ms"), r.get(f"{mode}_min_ms"), r.get(f"{mode}_max_ms")
    if med is None or lo is None or hi is None:
        return fmt(med)
    return f"{fmt(med)} ({fmt(lo)}-{fmt(hi)})"


def main(name: str = "attention") -> None:
    """Print ``results/NAME.json`` (or a path ending in .json) as Markdown tables."""
    path = Path(name) if name.endswith(".json") else RESULTS / f"{name}.json"
    data = json.loads(path.read_text())
    m = data["machine"]
    print(f"`{data['command']}` — {data['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}\n")
    ranked = any(r.get("fastest") or r.get("verdict") for r in data["rows"])
    print("| row | metric | value | target | meets |" + (" fastest contender: verdict |" if ranked else "")
          + "\n|---|---|---|---|---|" + ("---|" if ranked else ""))
    for r in data["rows"]:
        if r["metric"] != "measurement":
            meets = "" if r.get("target") is None else ("OK" if r.get("meets") else "**MISS**")
            best = ": ".join(str(r[k]) for k in ("fastest", "verdict") if r.get(k))
            print(f"| {r['name']} | {r['metric']} | {fmt(r['value'])}{unit(r)} | {fmt(r.get('target'))} | {meets} |"
                  + (f" {best} |" if ranked else ""))
    measured = [r for r in data["rows"] if r["metric"] == "measurement"]
    if measured:
        print("\n| case / contender | fwd ms (min-max) | fwd+bwd ms (min-max) | fwd peak MiB | fwd+bwd peak MiB |"
              "\n|---|---|---|---|---|")
    for r in measured:
        print(f"| {r['name']} | {timed(r, 'fwd')} | {timed(r, 'fwdbwd')} | "
              f"{fmt(r.get('fwd_peak_mb'))} | {fmt(r.get('fwdbwd_peak_mb'))} |")
    for note in data.get("notes", []):
        print(f"\n- {note}", end="")
    print()


if __name__ == "__main__":
    main(*sys.argv[1:])
