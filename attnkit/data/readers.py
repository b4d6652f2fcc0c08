"""Readers for text data files: tables (TSV, CSV, JSONL) and line-aligned parallel text.

Every reader stops at the first bad line with a :class:`~attnkit.errors.DataError` naming
the file, the line and the problem, or with ``on_error="skip"`` skips bad lines and reports
how many it skipped (``.skipped``) and why (``.skip_reasons``, the first few). CoNLL files
are read by :func:`read_conll` and IDX image files by :func:`read_idx` (same package).
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..registry import Registry
from ._common import Problems, codec_name, existing_file, numbered_lines
from .conll import ConllData, read_conll
from .encodings import resolve_encoding
from .idx import read_idx, read_mnist

__all__ = [
    "TABLE_FORMATS",
    "ConllData",
    "ParallelData",
    "TableData",
    "infer_format",
    "read_conll",
    "read_idx",
    "read_mnist",
    "read_parallel",
    "read_table",
]

# A row reader yields (line, {column: value}), (line, problem) for a bad line, and first
# (line, Header) when the format has a header line.
Row = tuple[int, "dict[str, object] | str | Header | Pair"]
TABLE_FORMATS: Registry = Registry("table format")


@dataclass
class Header:
    """The column names of a delimited file's header line."""

    columns: list[str]


@dataclass
class Pair:
    """A ``[text, label]`` entry of a JSON split: no names, so the configured columns (whatever
    they are called) take its two places."""

    text: object
    label: object


@dataclass
class TableData:
    """Texts and labels read from one table file; ``lines[i]`` is row i's line number."""

    path: str
    texts: list[str]
    labels: list[str] | None
    lines: list[int]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ParallelData:
    """Aligned source and target sentences; ``lines[i]`` is pair i's line in both files."""

    src_path: str
    tgt_path: str
    sources: list[str]
    targets: list[str]
    lines: list[int]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def path(self) -> str:
        """The source file (where line numbers point)."""
        return self.src_path


def _delimited_rows(path: Path, encoding: str, delimiter: str, quoting: int) -> Iterator[Row]:
    lines = numbered_lines(path, encoding)
    reader = csv.reader((text for _, text in lines), delimiter=delimiter, quoting=quoting)
    name = "tab" if delimiter == "\t" else "comma"
    header: list[str] | None = None
    end = 0  # last physical line consumed: a quoted CSV field may span several lines
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields or fields == [""]:  # blank line, e.g. a trailing one
                continue
            if header is None:
                header = [h.strip() for h in fields]
                yield start, Header(header)
                continue
            if len(fields) != len(header):
                yield start, (f"expected {len(header)} {name}-separated fields like the "
                              f"header, found {len(fields)}")
                continue
            yield start, dict(zip(header, fields))
    except csv.Error as e:
        raise DataError(f"{path}:{end + 1}: {e}") from None


@TABLE_FORMATS.register("tsv")
def _tsv_rows(path: Path, encoding: str) -> Iterator[Row]:
    # QUOTE_NONE: SST-2 and IMDB sentences contain unbalanced double quotes.
    return _delimited_rows(path, encoding, "\t", csv.QUOTE_NONE)


@TABLE_FORMATS.register("csv")
def _csv_rows(path: Path, encoding: str) -> Iterator[Row]:
    return _delimited_rows(path, encoding, ",", csv.QUOTE_MINIMAL)


@TABLE_FORMATS.register("jsonl")
def _jsonl_rows(path: Path, encoding: str) -> Iterator[Row]:
    for line, text in numbered_lines(path, encoding):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield line, f"bad JSON ({e.msg} at column {e.colno})"
            continue
        if not isinstance(obj, dict):
            yield line, f"expected a JSON object, found {type(obj).__name__}"
            continue
        yield line, obj


@TABLE_FORMATS.register("json")
def _json_split_rows(path: Path, encoding: str, splits: list[str] | None = None) -> Iterator[Row]:
    """A JSON object of splits, each a list of ``[text, label]`` pairs or of objects (the
    CLINC150 ``data_full.json`` layout); ``FILE.json#train+oos_train`` selects and joins
    splits. "Line" numbers count items across the selected splits (JSON has no lines)."""
    try:
        data = json.loads(path.read_text(encoding=codec_name(resolve_encoding(path, encoding))))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: bad JSON ({e.msg})") from None
    except UnicodeError as e:
        raise DataError(f"{path}: cannot be read as {encoding} ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of splits, found {type(data).__name__}")
    splits = splits or sorted(data)
    unknown = [k for k in splits if k not in data]
    if unknown:
        raise DataError(f"{path}: no split {', '.join(map(repr, unknown))}; it has: {', '.join(sorted(data))}")
    item = 0
    for key in splits:
        for entry in data[key]:
            item += 1
            if isinstance(entry, list) and len(entry) == 2:
                yield item, Pair(entry[0], entry[1])
            elif isinstance(entry, dict):
                yield item, entry
            else:
                yield item, f"{key}: expected [text, label] or an object, found {entry!r:.60}"


def split_path(path: str | os.PathLike) -> tuple[Path, list[str] | None]:
    """``FILE.json#a+b`` -> ``(FILE.json, ["a", "b"])``; other paths unchanged."""
    text = str(path)
    if "#" in text and not Path(text).exists():
        file, _, keys = text.rpartition("#")
        return Path(file), [k for k in keys.split("+") if k]
    return Path(text), None


def _suffix(path: str | os.PathLike) -> str:
    name = Path(path).name.lower().removesuffix(".gz")
    return name.rsplit(".", 1)[-1] if "." in name else ""


def has_table_suffix(path: str | os.PathLike) -> bool:
    """Whether a path's suffix names a table format (``FILE.json#split`` included)."""
    return _suffix(split_path(path)[0]) in TABLE_FORMATS


def infer_format(path: str | os.PathLike) -> str:
    """The table format named by a file's suffix (``.tsv``, ``.csv``, ``.jsonl``, + ``.gz``)."""
    suffix = _suffix(path)
    if suffix not in TABLE_FORMATS:
        raise ConfigError(
            f"{path}: cannot tell the table format from the suffix {suffix!r}; set it (data.format in a config, "
            f"--format on the command line) to one of {', '.join(TABLE_FORMATS.names())}, or to files for one "
            f"file per class (one text per line; the label is the suffix, as in x.pos and x.neg: give the glob "
            f"'x.*' for all of them)"
        )
    return suffix


def _cell(record: dict, column: str, what: str) -> tuple[str | None, str]:
    """``(value, problem)`` for one column of one row; ``value`` is None on a problem."""
    if column not in record:  # only JSONL rows get here: a header was checked up front
        return None, f"key {column!r} not found; keys: {', '.join(map(str, record))}"
    value = record[column]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"{what} must be a string, found {type(value).__name__}"
    value = str(value).strip()
    if not value:
        return None, f"empty {what}"
    return value, ""


def _check_header(path: Path, line: int, header: list[str], wanted: dict) -> None:
    """Every wanted column (``{"text": name, "label": name}``) is in the header line."""
    for what, column in wanted.items():
        if column is not None and column not in header:
            shown = ", ".join(c if len(c) <= 40 else c[:37] + "..." for c in header)
            hint = (" (a single column: wrong format or delimiter?)" if len(header) == 1 else
                    f"; name the {what} column with data.{what}_column (--{what}-column on the command line)")
            raise DataError(f"{path}:{line}: column {column!r} not found; columns: {shown}{hint}")


def read_table(
    path: str | os.PathLike,
    text_column: str,
    label_column: str | None,
    *,
    fmt: str | None = None,
    on_error: str = "raise",
    encoding: str = "utf-8",
) -> TableData:
    """Read texts (and labels, unless ``label_column`` is None) from a TSV, CSV, JSONL or JSON
    (splits of ``[text, label]`` pairs, ``FILE.json#split+split``) file.

    TSV/CSV files start with a header line naming the columns; JSONL files hold one object
    per line. Texts and labels are stripped of surrounding whitespace; labels are strings.
    A column missing from the header is an error in either mode.
    """
    path, splits = split_path(path)
    problems = Problems(Path(path), on_error)
    p = existing_file(path)
    reader = TABLE_FORMATS.get(fmt or infer_format(p), where="read_table fmt")
    if splits is not None and reader is not _json_split_rows:
        raise ConfigError(f"{path}#{'+'.join(splits)}: '#split' selects splits of a .json file only")
    rows = reader(p, encoding, splits) if splits is not None else reader(p, encoding)
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    seen_any = False
    for line, record in rows:
        seen_any = True
        if isinstance(record, Header):
            _check_header(p, line, record.columns, {"text": text_column, "label": label_column})
            continue
        if isinstance(record, str):
            problems.bad(line, record)
            continue
        columns = (text_column, label_column)
        if isinstance(record, Pair):  # positions, not names
            columns, record = ("text", label_column and "label"), {"text": record.text, "label": record.label}
        text, problem = _cell(record, columns[0], "text")
        label = ""
        if text is not None and columns[1] is not None:
            label, problem = _cell(record, columns[1], "label")
        if problem:
            problems.bad(line, problem)
            continue
        texts.append(text)
        labels.append(label)
        lines.append(line)
    if not seen_any:
        raise DataError(f"{p}: file is empty")
    if not texts:
        raise problems.nothing_left("rows")
    return TableData(str(p), texts, labels if label_column is not None else None, lines,
                     problems.skipped, problems.reasons)


def read_parallel(
    src_path: str | os.PathLike,
    tgt_path: str | os.PathLike,
    *,
    on_error: str = "raise",
    encoding: str = "utf-8",
) -> ParallelData:
    """Read line-aligned parallel text: line i of ``src_path`` translates line i of
    ``tgt_path``. Lines are never split on tabs (Multi30k has a tab inside a sentence)."""
    problems = Problems(Path(src_path), on_error)
    src, tgt = existing_file(src_path), existing_file(tgt_path)
    src_lines = [text.rstrip("\r\n") for _, text in numbered_lines(src, encoding)]
    tgt_lines = [text.rstrip("\r\n") for _, text in numbered_lines(tgt, encoding)]
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}; parallel "
            "files need one sentence per line in both"
        )
    sources, targets, lines = [], [], []
    for line, (s, t) in enumerate(zip(src_lines, tgt_lines), start=1):
        s, t = s.strip(), t.strip()
        if not s or not t:
            problems.bad(line, "empty sentence", path=src if not s else tgt)
            continue
        sources.append(s)
        targets.append(t)
        lines.append(line)
    if not sources:
        raise problems.nothing_left("sentence pairs")
    return ParallelData(str(src), str(tgt), sources, targets, lines,
                        problems.skipped, problems.reasons)
