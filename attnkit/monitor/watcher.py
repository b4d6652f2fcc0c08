"""``attnkit monitor``: score a stream of texts once, keep the state in SQLite, aggregate a
sentiment index per entity and period, raise sentiment-turn and drift alerts (each with the
texts that drove it, explained), and write them as JSON lines and an HTML dashboard."""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..deploy import attach_engine
from ..errors import ConfigError, DataError
from ..files import atomic_write
from ..rundir import LoadedRun, load_run
from .detect import DETECTORS
from .drift import compare
from .index import ALL, PERIODS, period_sql, series
from .scoring import HEALTH, Polarity, polarity, score_texts
from .state import State, text_key
from .stream import Columns, read_from, say_skipped

log = logging.getLogger("attnkit")
CHUNK = 512
REFERENCE_TEXTS = 2000
CACHE = 50_000  # scores of recent distinct texts kept in memory: a repost is not scored again


@dataclass
class MonitorSettings:
    """How the stream is read, aggregated and watched (the CLI's options)."""

    columns: Columns = field(default_factory=Columns)
    encoding: str = "utf-8"
    period: str = "day"
    detector: str = "cusum"
    sensitivity: float = 1.0
    psi_limit: float = 0.25
    positive: str | None = None
    negative: str | None = None
    reference: Path | None = None
    batch_size: int = 64
    explain_texts: int = 5
    dashboard: bool = True

    def check(self) -> None:
        """Option values that cannot work, named."""
        PERIODS.get(self.period, "--period")
        DETECTORS.get(self.detector, "--detector")
        if not self.sensitivity > 0:
            raise ConfigError(f"--sensitivity {self.sensitivity}: must be > 0")


@dataclass
class Summary:
    """What one pass did and found."""

    new_texts: int
    duplicates: int
    skipped: int
    out_of_order: int
    total_texts: int
    new_alerts: list[dict]
    alerts: list[dict]
    index: dict
    drift: list[dict]
    files: dict


class Monitor:
    """One stream watched by one run, its state in ``out/state.sqlite``."""

    def __init__(self, run: str | Path | LoadedRun, stream: str | Path, out: str | Path | None = None,
                 state: str | Path | None = None, settings: MonitorSettings | None = None):
        self.settings = settings or MonitorSettings()
        self.settings.check()
        self.stream = Path(stream)
        if not self.stream.is_file():
            raise DataError(f"--stream: {self.stream} not found")
        self.out = Path(out) if out is not None else self.stream.with_name(self.stream.stem + "-monitor")
        self.run_dir = Path(run.path if isinstance(run, LoadedRun) else run)
        self.run = run if isinstance(run, LoadedRun) else attach_engine(load_run(run), None)
        labels = list(self.run.meta.get("labels") or [])
        if self.run.task.target != "labels" or not labels:
            raise ConfigError(f"monitor: {self.run_dir} is a {self.run.cfg.task} run; it needs a text classifier "
                              f"with sentiment classes")
        self.labels = labels
        self.polarity: Polarity = polarity(labels, self.settings.positive, self.settings.negative)
        log.info(f"monitor: index = share of {self.polarity.positive!r} - share of {self.polarity.negative!r}")
        self.state = State(Path(state) if state is not None else self.out / "state.sqlite")
        try:
            self.state.bind(str(self.run_dir.resolve()), labels)
        except Exception:
            self.state.close()
            raise
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._last: Summary | None = None
        self._reference: dict | None = None

    def close(self) -> None:
        """Close the state database."""
        self.state.close()

    # ------------------------------------------------------------------ reading and scoring
    def ingest(self, progress: bool = True) -> dict:
        """Score what is new in the stream; returns counts (new, duplicates, skipped, out of
        order, new entities). A stream that is missing for now (rotated) is waited for."""
        counts = {"new": 0, "duplicates": 0, "skipped": 0, "out_of_order": 0, "new_entities": 0}
        if not self.stream.is_file():
            log.warning(f"{self.stream}: missing (rotated?); waiting for it")
            return counts
        offset, lines, last_ts = self.state.position(self.stream)
        size = max(self.stream.stat().st_size, 1)
        entities = announce = None  # read when there is something new (a poll usually finds nothing)
        first_late, shown, said = None, 0, time.monotonic()
        while True:
            chunk = read_from(self.stream, offset, lines, self.settings.columns, self.settings.encoding, CHUNK)
            shown = say_skipped(self.stream, chunk.skipped, shown)
            counts["skipped"] += len(chunk.skipped)
            if not chunk.records and chunk.offset == offset:
                break
            if entities is None:
                entities = self.state.entities()
                announce = bool(entities)  # on a first pass every entity is new: counted, not listed
            keys = [text_key(r.ts, r.entity, r.source, r.text) for r in chunk.records]
            known = self.state.known(keys)
            fresh, seen = [], set(known)
            for k, r in zip(keys, chunk.records):
                if k in seen:
                    counts["duplicates"] += 1
                    continue
                seen.add(k)
                fresh.append((k, r))
                if last_ts is not None and r.ts < last_ts:  # only new records: a re-read is not late
                    counts["out_of_order"] += 1
                    first_late = first_late or r.line
                last_ts = r.ts if last_ts is None else max(last_ts, r.ts)
                if r.entity not in entities:
                    entities.add(r.entity)
                    counts["new_entities"] += 1
                    if announce and counts["new_entities"] <= 10:
                        log.info(f"{self.stream}:{r.line}: new entity {r.entity or ALL!r}")
            rows = self._score(fresh)
            counts["new"] += self.state.commit_batch(self.stream, rows, chunk.offset, chunk.lines, chunk.head, last_ts)
            offset, lines = chunk.offset, chunk.lines
            if progress and time.monotonic() - said > 5:
                log.info(f"{self.stream}: {counts['new']:,} new texts scored ({100 * offset / size:.0f}% of the file)")
                said = time.monotonic()
        if counts["skipped"] > shown:
            log.warning(f"{self.stream}: skipped {counts['skipped'] - shown} more line(s)")
        if not announce and counts["new_entities"]:
            log.info(f"{self.stream}: {counts['new_entities']} entities")
        elif counts["new_entities"] > 10:
            log.info(f"{self.stream}: {counts['new_entities'] - 10} more new entities")
        if counts["out_of_order"]:
            log.warning(f"{self.stream}: {counts['out_of_order']} record(s) are earlier than one before them (first "
                        f"at line {first_late}); accepted: the index is by time, not by arrival")
        if counts["duplicates"]:
            log.info(f"{self.stream}: {counts['duplicates']} record(s) already stored (same time, entity, source "
                     f"and text) were not counted again")
        return counts

    def _score(self, fresh: list) -> list[dict]:
        """Rows for the state: each distinct text scored once (recent ones from memory)."""
        texts = [t for t in dict.fromkeys(r.text for _, r in fresh) if t not in self._cache]
        if texts:
            for text, scores in zip(texts, score_texts(self.run, texts, self.polarity, self.settings.batch_size)):
                self._cache[text] = scores
        rows = []
        for k, r in fresh:
            self._cache.move_to_end(r.text)
            rows.append({"key": k, "stream": str(self.stream.resolve()), "line": r.line, "ts": r.ts,
                         "entity": r.entity, "source": r.source, "text": r.text, **self._cache[r.text]})
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return rows

    # ------------------------------------------------------------------ the drift reference
    def reference(self) -> dict | None:
        """The health features of reference texts (the run's dev data, or ``--reference``),
        scored once and kept in the state; None when there is none (drift is then off)."""
        if self._reference is not None:
            return self._reference or None  # {}: looked for and not found (said once)
        given = self.settings.reference
        stored = self.state.get("reference")
        if stored is not None and (given is None or stored.get("source") == str(given)):
            log.info(f"monitor: drift reference: {stored['source']} ({stored['n']} texts, kept in the state)")
            self._reference = stored
            return stored
        try:
            texts, source = self._reference_texts()
        except (DataError, ConfigError, OSError) as e:
            log.warning(f"monitor: no drift reference ({e}); give --reference FILE (texts like the training data) "
                        f"to compare the stream with")
            self._reference = {}
            return None
        rng = np.random.default_rng(0)
        if len(texts) > REFERENCE_TEXTS:
            texts = [texts[i] for i in sorted(rng.choice(len(texts), REFERENCE_TEXTS, replace=False))]
        rows = score_texts(self.run, texts, self.polarity, self.settings.batch_size)
        ref = {"source": source, "n": len(rows), **{k: [r[k] for r in rows] for k in (*HEALTH, "label")}}
        self.state.put("reference", ref)
        log.info(f"monitor: drift reference: {source} ({len(rows)} texts)")
        self._reference = ref
        return ref

    def _reference_texts(self) -> tuple[list[str], str]:
        if self.settings.reference is not None:
            from ..run.prediction import read_texts

            return read_texts(self.settings.reference, text_column=self.settings.columns.text), \
                str(self.settings.reference)
        dev = self.run.task.read_splits(self.run.cfg)[1]
        return list(dev.texts), f"the dev data of {self.run_dir}"

    # ------------------------------------------------------------------ analysis
    def analyse(self) -> tuple[dict, list[dict], list[dict]]:
        """(index per entity, drift per period, every alert found now) from the whole state."""
        s = self.settings
        index = series(self.state, s.period, self.polarity.positive, self.polarity.negative)
        detect = DETECTORS.get(s.detector)
        alerts = []
        for entity, points in index.items():
            for a in detect(points, s.sensitivity):
                alerts.append({"kind": "sentiment", "entity": entity, "period": points[a.at].period,
                               "since": points[a.since].period, "direction": a.direction,
                               "index_before": round(a.baseline, 4), "index_since": round(a.current, 4),
                               "statistic": a.statistic, "detector": s.detector, "sensitivity": s.sensitivity})
        drift = self._drift()
        for d in drift:
            if d["drift"]:
                alerts.append({"kind": "drift", "entity": "*", "period": d["period"], "features": {
                    k: d["features"][k] for k in d["drift"]}, "n": d["n"]})
        return {e: [p.to_dict() for p in pts] for e, pts in index.items()}, drift, alerts

    def _drift(self) -> list[dict]:
        """Each period of the stream compared with the reference (empty without one)."""
        ref = self.reference()
        if ref is None:
            return []
        rows = self.state.db.execute(
            f"SELECT {period_sql(self.settings.period)} AS p, label, {', '.join(HEALTH)} FROM texts ORDER BY p")
        periods: dict[str, dict] = {}
        for p, label, *vals in rows:
            d = periods.setdefault(p, {"label": [], **{k: [] for k in HEALTH}})
            d["label"].append(label)
            for k, v in zip(HEALTH, vals):
                d[k].append(v)
        return [{"period": p, **compare(ref, d, self.labels, self.settings.psi_limit)} for p, d in periods.items()]

    def explain_alert(self, alert: dict) -> dict:
        """The texts that drove an alert, explained (which words: the three it attends to
        most, punctuation left out): for a sentiment turn, the entity's distinct texts since
        the change with the label in its direction, most confident first; for drift, the
        period's least confident texts."""
        when = period_sql(self.settings.period)
        if alert["kind"] == "sentiment":
            label = self.polarity.negative if alert["direction"] == "down" else self.polarity.positive
            entity = "" if alert["entity"] == ALL else alert["entity"]
            rows = self.state.db.execute(
                "SELECT text, label, MAX(confidence) AS c, MAX(ts) FROM texts WHERE entity = ? AND label = ? AND "
                f"{when} BETWEEN ? AND ? GROUP BY text ORDER BY c DESC LIMIT ?",
                (entity, label, alert["since"], alert["period"], self.settings.explain_texts)).fetchall()
        else:
            rows = self.state.db.execute(
                f"SELECT text, label, MIN(confidence) AS c, MAX(ts) FROM texts WHERE {when} = ? "
                "GROUP BY text ORDER BY c ASC LIMIT ?", (alert["period"], self.settings.explain_texts)).fetchall()
        texts = []
        if rows:
            from ..explain import explain

            for (text, label, conf, ts), e in zip(rows, explain(self.run, [r[0] for r in rows], "attention")):
                scores = np.asarray(e.scores, float)
                top = [e.tokens[i] for i in np.argsort(-scores) if any(ch.isalnum() for ch in e.tokens[i])][:3]
                texts.append({"text": text, "label": label, "confidence": round(conf, 4),
                              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)), "words": top,
                              "tokens": e.tokens, "scores": [round(float(v), 4) for v in scores]})
        return {**alert, "texts": texts}

    # ------------------------------------------------------------------ one pass
    def step(self, progress: bool = True) -> Summary:
        """Read and score what is new, analyse everything, store and write new alerts, the
        alerts file and the dashboard. A pass that finds nothing new after the first one
        writes nothing and returns the last summary with zero counts (``--follow`` polls)."""
        counts = self.ingest(progress)
        if not counts["new"] and self._last is not None:
            return replace(self._last, new_texts=0, duplicates=counts["duplicates"], skipped=counts["skipped"],
                           out_of_order=0, new_alerts=[])
        index, drift, found = self.analyse()
        new = [self.explain_alert(a) for a in self._unraised(found)]
        if new:
            self.state.add_alerts(new)
        alerts = self.state.alerts()
        files = {"state": str(self.state.path), "alerts": str(self.out / "alerts.jsonl")}
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / "alerts.jsonl", lambda f: f.write("".join(
            json.dumps(a, ensure_ascii=False) + "\n" for a in alerts).encode("utf-8")))
        summary = Summary(counts["new"], counts["duplicates"], counts["skipped"], counts["out_of_order"],
                          self.state.count(), new, alerts, index, drift, files)
        if self.settings.dashboard:
            from .dashboard import write_dashboard

            files["dashboard"] = str(write_dashboard(self.out / "dashboard.html", self, summary))
        self._last = summary
        return summary

    def _unraised(self, found: list[dict]) -> list[dict]:
        """The alerts found now that were not raised before. The whole history is analysed
        each pass and the last period may be incomplete, so a turn seen yesterday can be dated
        a period later today: a sentiment alert whose span (``since`` to ``period``) overlaps
        a raised one of the same entity and direction is the same turn."""
        raised = self.state.alerts()
        ids = {(a["kind"], a["entity"], a["period"]) for a in raised}
        out = []
        for a in found:
            if (a["kind"], a["entity"], a["period"]) in ids:
                continue
            if a["kind"] == "sentiment" and any(
                    r["kind"] == "sentiment" and r["entity"] == a["entity"] and r["direction"] == a["direction"]
                    and r["since"] <= a["period"] and a["since"] <= r["period"] for r in raised + out):
                continue
            out.append(a)
        return out


def monitor(run: str | Path | LoadedRun, stream: str | Path, out: str | Path | None = None,
            state: str | Path | None = None, settings: MonitorSettings | None = None,
            progress: bool = True) -> Summary:
    """One pass of :class:`Monitor` over ``stream``: score what is new, then alerts and dashboard."""
    m = Monitor(run, stream, out, state, settings)
    try:
        return m.step(progress)
    finally:
        m.close()
