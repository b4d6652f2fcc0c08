"""A/B of the chunked attention kernel (additive and MLP scores) between a git revision and
the working tree: did a change make it faster, on this machine, now?

Two persistent worker processes, one importing attnkit from a temporary ``git worktree`` of
``--before``, one from this checkout, get the same inputs (B=2, one head, L=2048, width 128,
hidden 128, the benchmark's additive/MLP case) and are called alternately, the order swapped
every round, so machine noise hits both alike; the speed-up is the median over rounds of
before / after. Results: ``benchmarks/results/chunked_ab.json``.

    python benchmarks/chunked_ab.py --before e8f2dd3 [--rounds 5] [--length 2048]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, row, write_results  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# the worker builds benchmarks/attention.py's additive/MLP case (this checkout's script) on the
# attnkit that PYTHONPATH names
WORKER = r"""
import sys, time, torch
import attnkit.attention  # from PYTHONPATH, before attention.py puts this checkout first on sys.path
sys.path.insert(0, sys.argv[2])
import attention as bench
torch.set_num_threads(2)
calls = {}
for dtype_name in ("fp32", "bf16"):
    bench._set_dtype(dtype_name)
    for score in ("additive", "mlp"):
        for mode in ("fwd", "fwdbwd"):
            spec = {"variant": score, "length": int(sys.argv[1])}
            calls[(score, dtype_name, mode)] = bench._callable(bench._additive_case, spec, "attnkit", mode)
print("ready", attnkit.__file__, flush=True)
for line in sys.stdin:
    score, dtype_name, mode = line.split()
    with torch.set_grad_enabled(mode == "fwdbwd"):
        t0 = time.perf_counter()
        calls[(score, dtype_name, mode)]()
        print(time.perf_counter() - t0, flush=True)
"""


class Worker:
    """A worker process importing attnkit from ``root``; ``time(case)`` runs one case."""

    def __init__(self, root: Path, length: int):
        env = dict(os.environ, PYTHONPATH=str(root))
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(length), str(BENCH)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"worker for {root} did not start")
        if not Path(ready[1]).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"worker for {root} imported attnkit from {ready[1]}")

    def time(self, case: str) -> float:
        self.proc.stdin.write(case + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a worker stopped while running {case!r} (its error is above)")
        return float(line)

    def close(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    """Time both versions alternately and write the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--out", default=str(RESULTS / "chunked_ab.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.before], check=True)
        workers = {}
        try:
            workers = {"before": Worker(tree, args.length), "after": Worker(ROOT, args.length)}
            cases = [f"{s} {d} {m}" for s in ("additive", "mlp") for d in ("fp32", "bf16") for m in ("fwd", "fwdbwd")]
            times: dict = {c: {w: [] for w in workers} for c in cases}
            for c in cases:  # warm-up: scratch buffers, first-touch pages
                for w in workers.values():
                    w.time(c)
            for r in range(args.rounds):
                for c in cases:
                    for name in (list(workers) if r % 2 == 0 else list(workers)[::-1]):
                        times[c][name].append(workers[name].time(c))
                print(f"round {r + 1}/{args.rounds} done", flush=True)
        finally:
            for w in workers.values():
                w.close()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    rows = []
    for c, t in times.items():
        name = "/".join(c.split()[:2]) + f"/L{args.length}/" + c.split()[2]
        ratios = [b / a for b, a in zip(t["before"], t["after"])]
        spread = {w: [round(min(v) * 1e3, 1), round(statistics.median(v) * 1e3, 1), round(max(v) * 1e3, 1)]
                  for w, v in t.items()}
        rows.append(row(name, "speedup_after_vs_before", round(statistics.median(ratios), 3), None, "higher", "x",
                        spread_ms=spread))
        print(f"{name:32s} before {spread['before'][1]:9.1f} ms  after {spread['after'][1]:9.1f} ms  "
              f"speed-up {rows[-1]['value']}x", flush=True)
    notes = [f"before: git revision {args.before}; after: the working tree; {args.rounds} rounds, the two versions "
             "called alternately in persistent processes (order swapped every round), torch.set_num_threads(2); "
             "speed-up: median over rounds of before/after; spread_ms: [min, median, max]; one worker "
             "waits while the other runs, so neither sees the other as load (the thread policy of "
             "attnkit/attention/backends/threads.py keeps both threads in both versions)"]
    print(f"wrote {write_results('chunked_ab', rows, notes, args.out)}")


if __name__ == "__main__":
    main()
