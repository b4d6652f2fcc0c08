"""Translation quality beyond the headline: a trained run (``benchmarks/quality.py`` trains it)
decoded on Multi30k test2016 greedily and with beam 5, and BLEU by source-length bucket.
Rows are merged into ``benchmarks/results/quality.json`` beside the run's headline row.

    python benchmarks/translation_quality.py --name multi30k/transformer_de_en \\
        --run /tmp/attnkit-quality/multi30k-transformer_de_en
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, row

BUCKETS = ((1, 10), (11, 15), (16, 20), (21, 10_000))  # source words (whitespace)


def decode(run, data, beam: int) -> tuple[list[str], float]:
    """Detokenised best hypotheses of every pair of ``data`` with ``beam``, and the seconds taken."""
    from attnkit.tasks import predict_data

    run.model.search = dataclasses.replace(run.model.search, beam=beam, nbest=1)
    t0 = time.perf_counter()
    preds, _, _ = predict_data(run.model, run.task, data, batch_size=64)
    sw = run.featurized.vocabs["subwords.json"]
    return [sw.decode(p[0].tokens) for p in preds], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the row name in quality.json (e.g. multi30k/transformer_de_en)")
    args = ap.parse_args()
    import torch

    from attnkit.rundir import load_run
    from attnkit.tasks.metrics import translation_metrics

    torch.set_num_threads(2)
    run = load_run(args.run)
    raw = run.task.read_file(run.cfg, run.cfg.data.test)
    data = run.task.encode(run.featurized, raw)
    refs = data.references
    rows = []
    hyps = {}
    for beam in (1, 5):
        hyps[beam], secs = decode(run, data, beam)
        m = translation_metrics(hyps[beam], refs)
        for key in ("bleu", "bleu_lc", "chrf"):
            rows.append(row(args.name, f"test_{key}_{'greedy' if beam == 1 else 'beam5'}", round(m[key], 2), None,
                            "higher", signature=m.get(f"{key}_signature"), decode_s=round(secs, 1)))
    sources = raw.sources
    for lo, hi in BUCKETS:
        idx = [i for i, s in enumerate(sources) if lo <= len(s.split()) <= hi]
        if not idx:
            continue
        m = translation_metrics([hyps[5][i] for i in idx], [refs[i] for i in idx])
        label = f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
        rows.append(row(args.name, f"test_bleu_lc_beam5_src_words_{label}", round(m["bleu_lc"], 2), None, "higher",
                        sentences=len(idx)))
    stamp = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
             "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "run_dir": str(args.run)}
    rows = [{**r, **stamp} for r in rows]
    for r in rows:
        print(f"{r['metric']:40s} {r['value']}")
    path = RESULTS / "quality.json"
    payload = json.loads(path.read_text())
    keep = [r for r in payload["rows"] if not (r["name"] == args.name and r["metric"].startswith(
        ("test_bleu_greedy", "test_bleu_beam5", "test_bleu_lc_", "test_chrf_")) and r["metric"] != "test_bleu_lc")]
    payload["rows"] = keep + rows
    payload["machine"] = machine()
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print("merged into", path)


if __name__ == "__main__":
    main()
