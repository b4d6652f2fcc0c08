"""Reading a stream of texts: CSV or JSON lines with a timestamp, a text and optionally an
entity and a source, read from a byte offset so a file that keeps growing is read once.

A line that cannot be used (no timestamp, an unparseable one, no text, a broken JSON or CSV
row) is skipped with a warning naming the file and line: a monitor of a live feed must not
stop on one bad record. A last line without its newline is not read yet (the writer may be in
the middle of it)."""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("attnkit")
FORMATS = ("csv", "tsv", "jsonl")


@dataclass(frozen=True)
class Columns:
    """Which fields of a stream record hold what (``entity``/``source`` may be absent)."""

    time: str = "timestamp"
    text: str = "text"
    entity: str = "entity"
    source: str = "source"


@dataclass
class Record:
    """One usable stream record: its line number, time (UTC, seconds), entity, source, text."""

    line: int
    ts: float
    entity: str
    source: str
    text: str


@dataclass
class Chunk:
    """What one read gave: records, where the next read starts, and what was skipped."""

    records: list[Record]
    offset: int
    lines: int
    skipped: list[tuple[int, str]] = field(default_factory=list)


def stream_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file's suffix."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    raise DataError(f"--stream: {path}: unknown format {path.suffix or '(no suffix)'!r}; a stream is .csv, .tsv or "
                    f".jsonl (one JSON object per line)")


def parse_time(value) -> float:
    """Seconds since the epoch (UTC) from an ISO 8601 string (a date alone, or date and time;
    without a zone: UTC) or a number of seconds. Raises ValueError with the reason."""
    if isinstance(value, bool) or value is None:
        raise ValueError("no timestamp")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty timestamp")
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {text[:40]!r} is neither ISO 8601 (2026-11-30 or 2026-11-30T09:15:00Z) "
                         f"nor seconds since 1970") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def header_of(path: Path, fmt: str, encoding: str) -> list[str] | None:
    """The column names of a CSV/TSV stream (its first line), None for JSON lines."""
    if fmt == "jsonl":
        return None
    with open(path, "rb") as f:
        first = f.readline()
    if not first.endswith(b"\n"):
        return None  # not even a whole header line yet
    return next(csv.reader([first.decode(encoding).rstrip("\r\n")], delimiter="\t" if fmt == "tsv" else ","))


def check_columns(path: Path, header: list[str] | None, cols: Columns) -> None:
    """A CSV/TSV stream must have the time and text columns (named in the message if not)."""
    if header is None:
        return
    missing = [f"{opt} {name!r}" for opt, name in (("--time-column", cols.time), ("--text-column", cols.text))
               if name not in header]
    if missing:
        raise DataError(f"--stream: {path}:1: no column {' or '.join(missing)} in the header "
                        f"(columns: {', '.join(header)})")


def read_from(path: Path, offset: int, line: int, cols: Columns, encoding: str = "utf-8",
              max_records: int | None = None) -> Chunk:
    """Records from byte ``offset`` (``line``: the number of lines before it) up to the last
    complete line, or ``max_records`` of them. The header of a CSV/TSV is line 1."""
    fmt = stream_format(path)
    header = header_of(path, fmt, encoding)
    check_columns(path, header, cols)
    records: list[Record] = []
    skipped: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        f.seek(offset)
        while max_records is None or len(records) < max_records:
            raw = f.readline()
            if not raw.endswith(b"\n"):
                break  # end of file, or a line still being written
            offset += len(raw)
            line += 1
            if line == 1 and header is not None:
                continue
            if not raw.strip():
                continue
            try:
                rec = _record(raw.decode(encoding), fmt, header, cols, line)
            except UnicodeDecodeError as e:
                skipped.append((line, f"bytes that are not {encoding} at column {e.start + 1}"))
                continue
            except ValueError as e:
                skipped.append((line, str(e)))
                continue
            records.append(rec)
    return Chunk(records, offset, line, skipped)


def _record(text: str, fmt: str, header: list[str] | None, cols: Columns, line: int) -> Record:
    """One line as a record; ValueError says why it cannot be used."""
    if fmt == "jsonl":
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
    else:
        values = next(csv.reader(io.StringIO(text.rstrip("\r\n")), delimiter="\t" if fmt == "tsv" else ","), [])
        if len(values) != len(header):
            raise ValueError(f"{len(values)} fields where the header has {len(header)}")
        row = dict(zip(header, values))
    if row.get(cols.time) in (None, ""):
        raise ValueError(f"no timestamp (field {cols.time!r})")
    ts = parse_time(row[cols.time])
    body = row.get(cols.text)
    if not isinstance(body, str) or not body.strip():
        raise ValueError(f"no text (field {cols.text!r})")
    entity = row.get(cols.entity)
    source = row.get(cols.source)
    return Record(line, ts, "" if entity is None else str(entity), "" if source is None else str(source), body)


def say_skipped(path: Path, skipped: list[tuple[int, str]]) -> None:
    """One warning per skipped line (the first 10), then a count."""
    for line, why in skipped[:10]:
        log.warning(f"{path}:{line}: skipped: {why}")
    if len(skipped) > 10:
        log.warning(f"{path}: skipped {len(skipped) - 10} more line(s)")
