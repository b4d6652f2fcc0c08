"""The fuzz harness at length: ``tests/fuzz`` under Hypothesis's ``long`` profile (150 cases
per property instead of the 25 ``make test`` runs), every outcome counted per entry point:
result, clean error, traceback. Writes ``benchmarks/results/fuzz.json``.

    python benchmarks/fuzz.py                 # long profile
    python benchmarks/fuzz.py --profile default
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine, row  # noqa: E402


def main() -> None:
    """Run the harness, count outcomes, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="long", choices=["default", "long"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "outcomes.jsonl"
        env = {**os.environ, "HYPOTHESIS_PROFILE": args.profile, "ATTNKIT_FUZZ_LOG": str(log)}
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.time() - start
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts = collections.defaultdict(collections.Counter)
    for r in rows:
        counts[r["entry"]][r["kind"]] += 1
    table = [row(entry, "tracebacks", c["traceback"], 0, "lower", "cases", cases=sum(c.values()),
                 result=c["result"], clean_error=c["clean_error"], traceback=c["traceback"])
             for entry, c in sorted(counts.items())]
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    print(f"{'entry point':40} {'cases':>6} {'result':>7} {'error':>6} {'traceback':>9}")
    for r in table:
        print(f"{r['name']:40} {r['cases']:6} {r['result']:7} {r['clean_error']:6} {r['traceback']:9}")
    print(f"{'total':40} {sum(total.values()):6} {total['result']:7} {total['clean_error']:6} {total['traceback']:9}")
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(summary or proc.stderr[-2000:])
    out = {"command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
           "machine": machine(), "profile": args.profile, "wall_s": round(wall, 1),
           "pytest_exit_code": proc.returncode, "pytest_summary": summary,
           "total": {"cases": sum(total.values()), **{k: total[k] for k in ("result", "clean_error", "traceback")}},
           "rows": table}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
