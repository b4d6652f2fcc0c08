"""Mutation score of the numerical core: mutmut's mutants of ``attnkit/attention``,
``attnkit/nn`` and ``attnkit/train/optim.py`` run against their fast tests (configuration:
``[tool.mutmut]`` in pyproject.toml; how-to: docs/contributing.md).

    python benchmarks/mutation.py                    # run every mutant, then write the result
    python benchmarks/mutation.py --no-run           # only summarise mutmut's stored results
    python benchmarks/mutation.py "attnkit.attention.masks*"   # only these mutants
    python benchmarks/mutation.py --sample 400 --seed 7   # a random sample: the score with its 95% interval
    python benchmarks/mutation.py --no-run --only-given --names-file benchmarks/mutation_sample.txt  # those only

A mutant is *killed* when some test fails (or it times out); it *survives* when every test
covering it passes. Survivors reviewed as equivalent (no input can tell them from the
original) are listed with the reason in ``benchmarks/mutation_equivalent.json`` and left out
of the adjusted score. Writes ``benchmarks/results/mutation.json`` (``--label`` names the
result, e.g. ``before`` for the suite as it was) with counts per module, the run time, and
the surviving mutants.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = Path(__file__).resolve().parent / "mutation_equivalent.json"
KILLED = {"killed", "timeout", "segfault"}
NOT_RUN = {"not checked", "skipped", "check was interrupted by user"}


def mutmut(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the venv's mutmut with ``args`` in ``cwd``."""
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=cwd, text=True, capture_output=True, check=False)


def statuses(cwd: Path = ROOT) -> dict[str, str]:
    """``{mutant name: status}`` from ``mutmut results --all true``."""
    return parse_statuses(mutmut("results", "--all", "true", cwd=cwd).stdout)


def parse_statuses(text: str) -> dict[str, str]:
    """``{mutant name: status}`` from ``name: status`` lines (as ``mutmut results`` prints them)."""
    res = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            res[name] = status.strip()
    return res


def module_of(name: str) -> str:
    """``attnkit.attention.masks.x_window__mutmut_3`` -> ``attnkit.attention.masks``."""
    parts = name.split(".")
    return ".".join(p for p in parts if not (p.startswith("x_") or p.startswith("xǁ")))


def summarise(status: dict[str, str], equivalent: dict[str, str]) -> tuple[list[dict], list[str]]:
    """Rows per module and overall: raw score (killed / run) and adjusted (killed / (run -
    equivalent)); plus the unexplained survivors."""
    per = collections.defaultdict(collections.Counter)
    survivors = []
    for name, st in status.items():
        mod = module_of(name)
        if st in NOT_RUN:
            per[mod]["not_run"] += 1
            continue
        per[mod]["run"] += 1
        if st in KILLED:
            per[mod]["killed"] += 1
        elif name in equivalent:
            per[mod]["equivalent"] += 1
        else:
            per[mod]["survived" if st == "survived" else "other"] += 1
            survivors.append(f"{name}: {st}")
    rows = []
    total = collections.Counter()
    for mod in sorted(per):
        c = per[mod]
        total.update(c)
        rows.append(_row(mod, c))
    rows.append(_row("total", total, target=0.90))
    return rows, sorted(survivors)


def _row(name: str, c: collections.Counter, target: float | None = None) -> dict:
    run, killed, eq = c["run"], c["killed"], c["equivalent"]
    adjusted = round(killed / (run - eq), 4) if run - eq else None
    return row(name, "mutation_score", adjusted, target, "higher", "",
               raw_score=round(killed / run, 4) if run else None, run=run, killed=killed, equivalent=eq,
               survived=c["survived"], other=c["other"], not_run=c["not_run"])


ISSUE_MUTANTS = Path(__file__).resolve().parent / "issue_mutants.json"


def run_issue_mutants(start: int = 0) -> list[dict]:
    """The hand-written mutants of the issue that started this (``issue_mutants.json``):
    each applied to a copy of the package and the suite run on it (full grid, ``-x``)."""
    import shutil
    import tempfile

    out = []
    for m in json.loads(ISSUE_MUTANTS.read_text())[start:]:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(ROOT / "attnkit", Path(tmp) / "attnkit")
            shutil.copytree(ROOT / "tests", Path(tmp) / "tests")
            target = Path(tmp) / m["file"]
            text = target.read_text()
            if text.count(m["old"]) != 1:
                sys.exit(f"{m['file']}: the mutant's text {m['old']!r} is not found exactly once")
            target.write_text(text.replace(m["old"], m["new"]))
            t0 = time.perf_counter()
            paths = ["tests/attention", "tests/nn", "tests/train/test_optim.py"]
            own = {"attnkit/nn": "tests/nn", "attnkit/train": "tests/train/test_optim.py"}
            first = next((t for src, t in own.items() if m["file"].startswith(src)), None)
            if first:  # the mutated area's own tests first: same verdict, sooner
                paths = [first] + [t for t in paths if t != first]
            done = subprocess.run([sys.executable, "-m", "pytest", *paths, "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                                   "-m", "not slow_compile"], cwd=tmp, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": tmp})
            caught = done.returncode != 0
            out.append({"mutant": f"{m['file']}: {m['what']}", "caught": caught,
                        "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{'caught' if caught else 'MISSED':7s} {m['file']}: {m['what']}", flush=True)
    return out


def given_names(args) -> list[str]:
    """The mutant names or patterns given as NAMES and in ``--names-file``."""
    names = list(args.names)
    if args.names_file:
        names += [ln.strip() for ln in args.names_file.read_text().splitlines() if ln.strip()]
    return names


def only(status: dict[str, str], given: list[str]) -> dict[str, str]:
    """The statuses of the ``given`` mutants (names, or patterns with ``*``); a name that
    matches no mutant is said (the code changed since the list was made)."""
    import fnmatch

    names = {g for g in given if not any(c in g for c in "*?[")}
    patterns = [g for g in given if g not in names]
    missing = sorted(names - status.keys())
    if missing:
        print(f"{len(missing)} named mutants no longer exist (the code changed since): {missing[:5]} ...", flush=True)
    return {k: v for k, v in status.items() if k in names or any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def draw_sample(n: int, seed: int, cwd: Path = ROOT, status: dict[str, str] | None = None) -> list[str]:
    """``n`` mutant names drawn without replacement from every mutant mutmut generated (sorted
    by name first, so the same seed draws the same mutants of the same code); ``status``: the
    store's statuses when already read."""
    import random

    names = sorted(statuses(cwd) if status is None else status)
    if not names:
        sys.exit("no mutants yet: run `mutmut run` once (it generates them) before drawing a sample")
    return sorted(random.Random(seed).sample(names, min(n, len(names))))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% for z = 1.96)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="mutant name patterns (default: every mutant)")
    ap.add_argument("--names-file", type=Path, help="more names or patterns, one per line")
    ap.add_argument("--sample", type=int, default=0,
                    help="run a random sample of this many mutants (drawn from all of them with --seed) and "
                         "summarise only those: an estimate of the whole set's score with its 95%% interval")
    ap.add_argument("--seed", type=int, default=0, help="with --sample: the draw's seed")
    ap.add_argument("--carry", type=Path,
                    help="statuses of an earlier run ('name: status' lines, as `mutmut results --all true` prints "
                         "them) for the mutants this store has not run: a re-run of the survivors after new tests "
                         "then counts with the earlier kills (tests were added, none removed). Only for code "
                         "unchanged since: mutmut numbers mutants within a function, so a changed function's "
                         "names then mean other mutations")
    ap.add_argument("--only-given", action="store_true",
                    help="summarise only the mutants named (NAMES, --names-file), e.g. a sample drawn before")
    ap.add_argument("--full-grid", action="store_true",
                    help="run the attention tests' full score x mask x modifier product for every mutant "
                         "(default: the pairwise-covering subset, ATTNKIT_TEST_GRID=pairwise)")
    ap.add_argument("--no-run", action="store_true", help="summarise stored results only")
    ap.add_argument("--children", type=int, default=2, help="mutants run at once (default 2)")
    ap.add_argument("--label", default="after", help="name of this result inside mutation.json")
    ap.add_argument("--cwd", type=Path, default=ROOT, help="checkout to run in (default: this one)")
    ap.add_argument("--out", help="results file (default benchmarks/results/mutation.json)")
    ap.add_argument("--start", type=int, default=0, help="with --issue-mutants: skip the first N")
    ap.add_argument("--issue-mutants", action="store_true",
                    help="only run the hand-written mutants of benchmarks/issue_mutants.json")
    args = ap.parse_args(argv)
    if args.sample and (args.names or args.names_file):
        ap.error("--sample draws its own mutants: give it without NAMES or --names-file (its total is then a "
                 "simple random sample)")
    given = given_names(args)  # read once
    if args.only_given and not given:
        ap.error("--only-given: name the mutants (NAMES or --names-file)")
    sampled = bool(args.sample or args.only_given)
    if args.out is None and sampled:
        args.out = str(ROOT / "benchmarks" / "results" / "mutation_sample.json")  # never over the full result
    if args.issue_mutants:
        rows = run_issue_mutants(start=args.start)
        caught = sum(r["caught"] for r in rows)
        write_results("issue_mutants", [row("issue_mutants", "caught", caught, len(rows), "higher", "",
                                            of=len(rows), mutants=rows)],
                      ["hand-written mutants from the issue 'Tests that catch bugs' (before: 6 of 11 caught)",
                       "each applied to a copy of attnkit/, then pytest tests/attention tests/nn "
                       "tests/train/test_optim.py -x -m 'not slow_compile' (full grid) on it"])
        return
    seconds = None
    stored = statuses(args.cwd) if args.sample and args.no_run else None  # nothing runs: drawn from and summarised
    names = draw_sample(args.sample, args.seed, args.cwd, stored) if args.sample else given
    if args.sample:
        print(f"drew {len(names)} mutants (seed {args.seed})", flush=True)
    if not args.no_run:
        env = dict(os.environ)
        if not args.full_grid:
            env["ATTNKIT_TEST_GRID"] = "pairwise"
        t0 = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "run", "--max-children",
                               str(args.children), *names], cwd=args.cwd, check=False, env=env)
        seconds = round(time.perf_counter() - t0, 1)
        if done.returncode:
            sys.exit(f"mutmut run failed with exit code {done.returncode}")
    status = stored if stored is not None else statuses(args.cwd)
    if not status:
        sys.exit("no mutmut results: run `mutmut run` (or this script without --no-run) first")
    if args.carry:
        earlier = parse_statuses(args.carry.read_text())
        status = {k: (earlier.get(k, v) if v in NOT_RUN else v) for k, v in status.items()}
    population = len(status)
    if sampled:
        status = only(status, names)
    equivalent = json.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    rows, survivors = summarise(status, equivalent)
    for r in rows:
        r["label"] = args.label
    if sampled:
        total = rows[-1]
        lo, hi = wilson(total["killed"], total["run"] - total["equivalent"])
        total["interval_95"] = [round(lo, 4), round(hi, 4)]
        total["population"] = population
    notes = [f"label: {args.label}",
             *([f"mutants this store has not run count with their status in {args.carry.name} (an earlier run "
                f"of the same mutants; tests were only added since)"] if args.carry else []),
             *([f"only {len(status)} of the {population:,} mutants generated: "
                + (f"a simple random sample (--sample {args.sample} --seed {args.seed}), so the total's score "
                   f"estimates the whole set's and interval_95 is its Wilson 95% interval" if args.sample else
                   "those named (NAMES / --names-file); interval_95 is the Wilson 95% interval of the total, an "
                   "estimate of the whole set's score only where the names were drawn at random")
                + "; per-module rows rest on few mutants"] if sampled else []),
             "mutation_score = killed / (run - reviewed equivalent); raw_score = killed / run; killed includes "
             "timeouts; other = suspicious or crashed runs, counted as not killed",
             "mutants: mutmut 3 operators on attnkit/attention, attnkit/nn, attnkit/train/optim.py; the text of "
             "`raise` statements is not mutated (error messages belong to the bad-input tests)",
             f"run time: {seconds} s with {args.children} mutants at a time" if seconds else "run time: not measured "
             "in this invocation (--no-run)",
             f"unexplained survivors ({len(survivors)}): " + "; ".join(survivors[:400])]
    path = write_results("mutation", rows, notes, args.out)
    for r in rows:
        print(f"{r['name']:40s} {r['killed']:5d}/{r['run']:<5d} killed  equivalent {r['equivalent']:3d}  "
              f"score {r['value']}  (raw {r['raw_score']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
