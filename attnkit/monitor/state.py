"""The monitor's state in one embedded SQLite file: every scored text (once, keyed by its
content), where each stream was read up to, the drift reference and the alerts raised.

Scores and the stream offset they came from are written in one transaction, so a run killed at
any point resumes where the last committed batch ended: nothing is lost, nothing counted twice."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from ..errors import DataError
from .stream import file_head

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL, line INTEGER NOT NULL,
    ts REAL NOT NULL, entity TEXT NOT NULL, source TEXT NOT NULL, text TEXT NOT NULL,
    label TEXT NOT NULL, positive REAL NOT NULL, negative REAL NOT NULL, confidence REAL NOT NULL,
    words INTEGER NOT NULL, unknown REAL NOT NULL, pieces REAL NOT NULL);
CREATE INDEX IF NOT EXISTS texts_entity_ts ON texts (entity, ts);
CREATE INDEX IF NOT EXISTS texts_ts ON texts (ts);
CREATE TABLE IF NOT EXISTS streams (
    path TEXT PRIMARY KEY, offset INTEGER NOT NULL, lines INTEGER NOT NULL, head TEXT NOT NULL,
    last_ts REAL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, entity TEXT NOT NULL, period TEXT NOT NULL,
    body TEXT NOT NULL, UNIQUE (kind, entity, period));
"""
TEXT_FIELDS = ("stream", "line", "ts", "entity", "source", "text", "label", "positive", "negative", "confidence",
               "words", "unknown", "pieces")


def text_key(ts: float, entity: str, source: str, text: str) -> str:
    """The identity of a record: the same time, entity, source and text are one record."""
    return hashlib.sha256(json.dumps([round(ts, 3), entity, source, text], ensure_ascii=False).encode()).hexdigest()


class State:
    """The SQLite state of one monitor (``path``), bound to the run that scores it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        try:
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise DataError(f"--state: {self.path} is not a monitor state database ({e}); give another --state "
                            f"or move it away") from None
        self.db.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def get(self, key: str, default=None):
        """A JSON value from the meta table."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value) -> None:
        """Store a JSON value in the meta table (committed)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def bind(self, run: str, labels: list[str]) -> None:
        """Tie the state to the run that scores it: a state made by another run (other scores)
        is an error, since its index would mix two models."""
        mine = {"run": run, "labels": labels}
        theirs = self.get("scored_by")
        if theirs is None:
            self.put("scored_by", mine)
        elif theirs != mine:
            raise DataError(f"--state: {self.path} holds texts scored by {theirs['run']} (labels "
                            f"{', '.join(theirs['labels'])}); it cannot mix them with {run}'s scores: give another "
                            f"--state")

    def position(self, stream: Path) -> tuple[int, int, float | None]:
        """Where to read ``stream`` from: (byte offset, lines before it, latest time read).
        A stream that shrank or whose beginning changed is read again from the start (texts
        already stored are recognised by their content and not counted again)."""
        row = self.db.execute("SELECT offset, lines, head, last_ts FROM streams WHERE path = ?",
                              (str(stream.resolve()),)).fetchone()
        if row is None:
            return 0, 0, None
        offset, lines, head, last_ts = row
        if stream.stat().st_size < offset or (offset and file_head(stream, offset) != head):
            return 0, 0, last_ts
        return offset, lines, last_ts

    def known(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are stored already."""
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            found.update(k for (k,) in self.db.execute(
                f"SELECT key FROM texts WHERE key IN ({','.join('?' * len(part))})", part))
        return found

    def commit_batch(self, stream: Path, rows: list[dict], offset: int, lines: int, head: str,
                     last_ts: float | None) -> int:
        """Store scored texts and the stream position after them (``head``: the fingerprint
        of the file's first bytes, taken as they were read) in one transaction; returns how
        many rows were new."""
        with self.db:
            before = self.db.total_changes
            self.db.executemany(
                f"INSERT OR IGNORE INTO texts (key, {', '.join(TEXT_FIELDS)}) VALUES "
                f"({', '.join('?' * (len(TEXT_FIELDS) + 1))})",
                [(r["key"], *(r[f] for f in TEXT_FIELDS)) for r in rows])
            added = self.db.total_changes - before
            self.db.execute("INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?)",
                            (str(stream.resolve()), offset, lines, head, last_ts))
        return added

    def entities(self) -> set[str]:
        """The entities stored so far."""
        return {e for (e,) in self.db.execute("SELECT DISTINCT entity FROM texts")}

    def count(self) -> int:
        """Texts stored."""
        return self.db.execute("SELECT COUNT(*) FROM texts").fetchone()[0]

    def add_alerts(self, alerts: list[dict]) -> None:
        """Store new alerts (one transaction)."""
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO alerts (kind, entity, period, body) VALUES (?, ?, ?, ?)",
                                [(a["kind"], a["entity"], a["period"], json.dumps(a, ensure_ascii=False))
                                 for a in alerts])

    def alerts(self) -> list[dict]:
        """Every alert raised, oldest first."""
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM alerts ORDER BY id")]
