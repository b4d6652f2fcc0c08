"""Streams for the monitor's tests: texts in the words of the session's text run (``pos`` iff
the text says "good"), with known daily negative shares per entity."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

WORDS = ["the", "film", "was", "plot", "a", "very", "movie", "bad", "dull", "fine"]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def sentence(rng: random.Random, positive: bool) -> str:
    """A text the session's text run labels ``pos`` (with "good") or ``neg``."""
    ws = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
    if positive:
        ws.insert(rng.randint(0, len(ws)), "good")
    return " ".join(ws)


def records(days: int = 30, per_day: int = 20, entities=("ACME", "BETA"), negative=lambda e, d: 0.3,
            seed: int = 0, text=sentence) -> list[dict]:
    """Stream records in time order: ``negative(entity, day)`` is each day's negative share."""
    rng = random.Random(seed)
    out = []
    for day in range(days):
        for e in entities:
            for i in range(per_day):
                ts = START + timedelta(days=day, seconds=int(86400 * (i + 0.5) / per_day))
                out.append({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "entity": e, "source": "wire",
                            "text": text(rng, rng.random() >= negative(e, day))})
    out.sort(key=lambda r: r["timestamp"])
    return out


def write_jsonl(path: Path, rows: list[dict], mode: str = "w") -> Path:
    """Rows as JSON lines (appended with ``mode="a"``)."""
    with open(path, mode, encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path
