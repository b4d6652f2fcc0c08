"""Financial sentiment monitoring (issue "Applications"): ``attnkit monitor`` on streams built
from Financial PhraseBank test sentences (held out of the run's training), with known truth.

Stream A: 5 entities x 200 days, Poisson(50) texts a day each; each entity-day's label mix is
drawn around its regime (sd 0.02) and four known turns happen: BRAVO 20% -> 45% negative on day
70 and back on day 160, CHARLIE 15% -> 40% on day 130, DELTA 30% -> 10% negative (and more
positive) on day 100; ALPHA and ECHO never change. Stream B: the same without turns, and from
day 150 the texts are movie-review sentences (IMDb test, 10-40 words, so length alone does not
give them away) instead of financial news.

Measured: correlation of the index with the true daily mix (share positive - share negative of
the gold labels of the texts that day); each turn's detection delay (first alarm in its
direction within 10 days); false alarms per entity per 100 days (every other alarm); the
delay / false-alarm trade-off of both detectors over sensitivities; drift alerts on A (all
false) and B (delay from day 150). Targets: correlation >= 0.9, delay <= 2 days, <= 1 false
alarm per entity per 100 days, the domain change flagged within 1 day.

    python benchmarks/monitor.py [--run RUN]   # trains examples/financial_sentiment.yaml when missing (~7 min)

Results in benchmarks/results/monitor.json."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAYS = 200
# entity: list of (from day, negative share, positive share)
REGIMES = {
    "ALPHA": [(0, 0.15, 0.30)],
    "BRAVO": [(0, 0.20, 0.30), (70, 0.45, 0.15), (160, 0.20, 0.30)],
    "CHARLIE": [(0, 0.15, 0.30), (130, 0.40, 0.20)],
    "DELTA": [(0, 0.30, 0.20), (100, 0.10, 0.45)],
    "ECHO": [(0, 0.20, 0.25)],
}
TURNS = [("BRAVO", 70, "down"), ("BRAVO", 160, "up"), ("CHARLIE", 130, "down"), ("DELTA", 100, "up")]
DOMAIN_CHANGE = 150
MATCH_DAYS = 10


def regime(entity: str, day: int) -> tuple[float, float]:
    """(negative, positive) share of an entity's regime on a day."""
    q, p = REGIMES[entity][0][1:]
    for start, q_, p_ in REGIMES[entity]:
        if day >= start:
            q, p = q_, p_
    return q, p


def imdb_sentences(path: Path, rng: np.random.Generator, n: int = 20000) -> list[str]:
    """Movie-review sentences of 10-40 words from the IMDb test file."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            review = line.split("\t", 1)[0].replace("<br />", " ")
            for s in re.split(r"(?<=[.!?])\s+", review):
                if 10 <= len(s.split()) <= 40:
                    out.append(s.strip())
            if len(out) >= 4 * n:
                break
    return [out[i] for i in rng.choice(len(out), min(n, len(out)), replace=False)]


def build_stream(path: Path, pools: dict, rng: np.random.Generator, turns: bool, foreign: list[str] | None) -> list[dict]:
    """Write a stream; returns its records (with their gold label, which the monitor never reads)."""
    rows = []
    for day in range(DAYS):
        for entity in REGIMES:
            q, p = regime(entity, day if turns else 0)
            q = float(np.clip(q + rng.normal(0, 0.02), 0.02, 0.9))
            p = float(np.clip(p + rng.normal(0, 0.02), 0.02, 0.9))
            for _ in range(rng.poisson(50)):
                ts = START + timedelta(days=day, seconds=int(rng.integers(86400)))
                if foreign is not None and day >= DOMAIN_CHANGE:
                    text, gold = foreign[int(rng.integers(len(foreign)))], "foreign"
                else:
                    u = rng.random()
                    gold = "negative" if u < q else "positive" if u < q + p else "neutral"
                    pool = pools[gold]
                    text = pool[int(rng.integers(len(pool)))]
                rows.append({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "entity": entity, "source": "wire",
                             "text": text, "gold": gold})
    rows.sort(key=lambda r: r["timestamp"])
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def day_of(period: str) -> int:
    return (datetime.fromisoformat(period).replace(tzinfo=timezone.utc) - START).days


def score_alarms(alarms_by_entity: dict) -> dict:
    """Delays of the known turns and the false alarms among ``{entity: [(day, direction)]}``."""
    used, delays = set(), {}
    for entity, day, direction in TURNS:
        hits = [(d, dr) for d, dr in alarms_by_entity.get(entity, []) if day <= d <= day + MATCH_DAYS and dr == direction]
        if hits:
            used.add((entity, hits[0][0]))
            delays[f"{entity}@{day}"] = hits[0][0] - day
        else:
            delays[f"{entity}@{day}"] = None
    false = sum(1 for e, alarms in alarms_by_entity.items() for d, _ in alarms if (e, d) not in used)
    return {"delays": delays, "false_alarms": false,
            "false_per_entity_per_100_days": round(100 * false / (len(REGIMES) * DAYS), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("/tmp/attnkit-quality/financial_phrasebank-minilm"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/attnkit-monitor-bench"))
    args = ap.parse_args()
    os.chdir(ROOT)  # the example config's data paths are relative to the repository
    import torch

    from attnkit.monitor import DETECTORS, Monitor, MonitorSettings
    from attnkit.monitor.index import Point
    from attnkit.rundir import load_run
    from attnkit.run import train

    torch.set_num_threads(2)
    trained_s = None
    if not (args.run / "model.safetensors").is_file():
        t0 = time.perf_counter()
        train(ROOT / "examples" / "financial_sentiment.yaml", out=args.run, progress=False)
        trained_s = round(time.perf_counter() - t0, 1)
    run = load_run(args.run)
    test = run.task.read_splits(run.cfg)[2]
    pools = {k: [t for t, y in zip(test.texts, test.labels) if y == k] for k in ("negative", "neutral", "positive")}
    print("test pools:", {k: len(v) for k, v in pools.items()}, flush=True)
    rng = np.random.default_rng(0)
    foreign = imdb_sentences(ROOT.parent / "shared" / "data" / "imdb" / "test.tsv.gz", rng)
    if args.out.exists():
        import shutil

        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    rows_a = build_stream(args.out / "news.jsonl", pools, rng, turns=True, foreign=None)
    rows_b = build_stream(args.out / "news_then_reviews.jsonl", pools, rng, turns=False, foreign=foreign)
    print(f"stream A {len(rows_a):,} records, stream B {len(rows_b):,}", flush=True)

    results, notes = [], []
    summaries = {}
    for name, stream in (("A", args.out / "news.jsonl"), ("B", args.out / "news_then_reviews.jsonl")):
        mon = Monitor(run, stream, args.out / f"monitor-{name}", settings=MonitorSettings())
        t0 = time.perf_counter()
        summaries[name] = mon.step(progress=True)
        wall = time.perf_counter() - t0
        mon.close()
        n = summaries[name].total_texts
        print(f"stream {name}: {n:,} texts in {wall:.1f} s", flush=True)
        results.append(row(f"stream_{name}", "records_per_s", round(n / wall, 1), None, "higher", records=n,
                           wall_s=round(wall, 1), distinct_texts=len({r["text"] for r in (rows_a if name == "A" else rows_b)})))

    # correlation of the index with the true daily mix (stream A)
    truth: dict = {}
    for r in rows_a:
        c = truth.setdefault((r["entity"], r["timestamp"][:10]), {"positive": 0, "negative": 0, "n": 0})
        c["n"] += 1
        if r["gold"] in ("positive", "negative"):
            c[r["gold"]] += 1
    a = summaries["A"]
    est, true = [], []
    for entity, points in a.index.items():
        for p in points:
            c = truth[(entity, p["period"])]
            est.append(p["index"])
            true.append((c["positive"] - c["negative"]) / c["n"])
    corr = float(np.corrcoef(est, true)[0, 1])
    within = []
    for entity in REGIMES:
        e = [p["index"] for p in a.index[entity]]
        t = [(truth[(entity, p["period"])]["positive"] - truth[(entity, p["period"])]["negative"]) /
             truth[(entity, p["period"])]["n"] for p in a.index[entity]]
        within.append(round(float(np.corrcoef(e, t)[0, 1]), 4))
    print(f"index vs true daily mix: r = {corr:.4f} (per entity {within})", flush=True)
    results.append(row("index", "correlation_with_true_daily_mix", round(corr, 4), 0.9, "higher",
                       per_entity=dict(zip(REGIMES, within)), points=len(est),
                       mean_abs_error=round(float(np.mean(np.abs(np.subtract(est, true)))), 4)))

    # the default detector, as the monitor ran it
    default = {e: [(day_of(x["period"]), x["direction"]) for x in a.alerts if x["kind"] == "sentiment" and x["entity"] == e]
               for e in REGIMES}
    sc = score_alarms(default)
    print(f"default (cusum, sensitivity 1): delays {sc['delays']}, false alarms {sc['false_alarms']}", flush=True)
    found = [d for d in sc["delays"].values() if d is not None]
    results.append(row("cusum/sensitivity=1 (default)", "max_detection_delay_days",
                       max(found) if len(found) == len(TURNS) else None, 2, "lower", delays=sc["delays"]))
    results.append(row("cusum/sensitivity=1 (default)", "false_alarms_per_entity_per_100_days",
                       sc["false_per_entity_per_100_days"], 1.0, "lower", false_alarms=sc["false_alarms"]))

    # the trade-off: both detectors over sensitivities, on the same index series
    trade = []
    for det in DETECTORS.names():
        for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
            alarms = {}
            for entity in REGIMES:
                pts = [Point(p["period"], p["n"], p["positive"], p["negative"]) for p in a.index[entity]]
                alarms[entity] = [(day_of(pts[x.at].period), x.direction) for x in DETECTORS.get(det)(pts, s)]
            sc = score_alarms(alarms)
            d = [v for v in sc["delays"].values() if v is not None]
            trade.append({"detector": det, "sensitivity": s, "found": f"{len(d)}/{len(TURNS)}",
                          "mean_delay_days": round(float(np.mean(d)), 2) if d else None,
                          "max_delay_days": max(d) if d else None, "delays": sc["delays"],
                          "false_per_entity_per_100_days": sc["false_per_entity_per_100_days"]})
            print(f"  {det:7} sensitivity {s:<4}: found {len(d)}/{len(TURNS)}, delays {list(sc['delays'].values())}, "
                  f"false {sc['false_per_entity_per_100_days']}/entity/100 days", flush=True)
    results.append(row("detectors", "tradeoff", len(trade), None, "higher", table=trade))

    # drift: none on A, the domain change on B
    drift_a = [x["period"] for x in a.alerts if x["kind"] == "drift"]
    b = summaries["B"]
    drift_b = [(day_of(x["period"]), list(x["features"])) for x in b.alerts if x["kind"] == "drift"]
    after = [d for d, _ in drift_b if d >= DOMAIN_CHANGE]
    delay = (after[0] - DOMAIN_CHANGE) if after else None
    before = [d for d, _ in drift_b if d < DOMAIN_CHANGE]
    print(f"drift: A {len(drift_a)} alert(s) {drift_a[:5]}; B first at day {after[0] if after else None} "
          f"(features {drift_b[len(before)][1] if after else None}), {len(before)} before the change", flush=True)
    results.append(row("drift/domain_change", "detection_delay_days", delay, 1, "lower",
                       features=drift_b[len(before)][1] if after else None, false_before_change=len(before)))
    results.append(row("drift/no_change", "false_drift_alerts", len(drift_a) + len(before), 0, "lower",
                       stream_a=drift_a, stream_b_before_change=before))
    notes.append("run: examples/financial_sentiment.yaml (all-MiniLM-L6-v2 fine-tuned on Financial PhraseBank 50Agree, "
                 "test accuracy 0.841)" + (f", trained here in {trained_s} s" if trained_s else f" ({args.run})"))
    notes.append(f"texts: the run's held-out test split ({sum(map(len, pools.values()))} sentences: "
                 f"{', '.join(f'{k} {len(v)}' for k, v in pools.items())}), drawn with replacement; IMDb sentences: "
                 f"{len(foreign)} from test.tsv.gz")
    notes.append("a turn counts as found by the first alarm in its direction within 10 days; every other alarm is false")
    print(f"wrote {write_results('monitor', results, notes)}")


if __name__ == "__main__":
    main()
