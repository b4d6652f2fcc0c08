"""Reading a stream of texts: CSV or JSON lines with a timestamp, a text and optionally an
entity and a source, read from a byte offset so a file that keeps growing is read once.

A line that cannot be used (no timestamp, an unparseable one, no text, a broken JSON or CSV
row) is skipped with a warning naming the file and line: a monitor of a live feed must not
stop on one bad record. A last line without its newline is not read yet (the writer may be in
the middle of it)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("attnkit")
HEAD_BYTES = 4096


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
    head: str = ""  # fingerprint of the file's first bytes up to ``offset``, from the same open file


def stream_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file's suffix."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    raise DataError(f"--stream: {path}: unknown format {path.suffix or '(no suffix)'!r}; a stream is .csv, .tsv or "
                    f".jsonl (one JSON object per line)")


LAST_SECOND = 253402300799.0  # 9999-12-31T23:59:59Z
MILLISECONDS = (1e11, 1e14)  # a number here is milliseconds (as seconds it would be past the year 5000)


def _epoch(v: float, shown) -> float:
    """Seconds from a number: milliseconds converted, NaN, infinities and dates outside years
    1970-9999 refused."""
    if MILLISECONDS[0] <= v < MILLISECONDS[1]:
        v = v / 1000.0
    if not (0.0 <= v <= LAST_SECOND):  # also False for NaN
        raise ValueError(f"timestamp {str(shown)[:40]!r} is not a time between 1970 and 9999 (seconds or "
                         f"milliseconds since 1970)")
    return v


def parse_time(value) -> float:
    """Seconds since the epoch (UTC) from an ISO 8601 string (a date alone, or date and time;
    without a zone: UTC) or a number of seconds (or of milliseconds: numbers from 1e11 to 1e14
    are read as such). Raises ValueError with the reason."""
    if isinstance(value, bool) or value is None:
        raise ValueError("no timestamp")
    if isinstance(value, (int, float)):
        return _epoch(float(value), value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty timestamp")
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return _epoch(number, text)
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
    text = first.decode(encoding).lstrip("\ufeff")  # a byte-order mark is not part of the first name
    return next(csv.reader([text.rstrip("\r\n")], delimiter="\t" if fmt == "tsv" else ","))


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
        f.seek(0)
        head = head_fingerprint(f.read(min(offset, HEAD_BYTES)))
    return Chunk(records, offset, line, skipped, head)


def head_fingerprint(data: bytes) -> str:
    """A fingerprint of a stream's first bytes (at most :data:`HEAD_BYTES`)."""
    return hashlib.sha256(data).hexdigest()


def file_head(path: Path, upto: int) -> str:
    """The fingerprint of ``path``'s first ``min(upto, HEAD_BYTES)`` bytes: compared with the
    one stored at ``upto``, it tells a file that grew from one that was rewritten."""
    with open(path, "rb") as f:
        return head_fingerprint(f.read(min(upto, HEAD_BYTES)))


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


def say_skipped(path: Path, skipped: list[tuple[int, str]], shown: int = 0, limit: int = 10) -> int:
    """One warning per skipped line until ``limit`` have been shown in this pass (``shown`` so
    far); returns the new count shown (the total is said at the end of the pass)."""
    for line, why in skipped[:max(0, limit - shown)]:
        log.warning(f"{path}:{line}: skipped: {why}")
    return min(limit, shown + len(skipped))
