"""A first look at a data file without reading it all: its format, encoding (and why) and
columns, for ``attnkit inspect-data`` and the pre-flight check of ``attnkit train``."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from ..errors import AttnkitError
from ._common import numbered_lines
from .encodings import AUTO, detect_encoding
from .layouts import class_files, class_folders, layout_of
from .readers import TABLE_FORMATS, Header, infer_format, split_path

HEAD_LINES = 50


@dataclass
class Source:
    """What a data path is: format, encoding (with the reason when detected), columns."""

    path: str
    format: str
    encoding: str
    encoding_reason: str = ""
    columns: list[str] = field(default_factory=list)
    note: str = ""  # e.g. the files of a glob, the class folders


def _first_file(path: str, fmt: str) -> Path | None:
    if fmt == "files":
        return class_files(path)[0]
    if fmt == "folders":
        sub = class_folders(path)[0]
        return next((p for p in sorted(sub.iterdir()) if p.is_file()), None)
    file, _ = split_path(path)
    return file if file.is_file() else None


def _columns(file: Path, fmt: str, encoding: str) -> list[str]:
    """The columns as the reader sees them: a table's header (or first JSON object's keys),
    or a CoNLL file's first token line."""
    if fmt in TABLE_FORMATS and fmt != "json":
        for _, record in islice(TABLE_FORMATS.get(fmt)(file, encoding), HEAD_LINES):
            if isinstance(record, (Header, dict)):
                return list(record.columns if isinstance(record, Header) else record)
        return []
    if fmt == "conll":
        lines = (text for _, text in islice(numbered_lines(file, encoding), HEAD_LINES))
        row = next((ln.split() for ln in lines if ln.strip() and not ln.startswith("-DOCSTART-")), [])
        return [f"column {i}: {v}" for i, v in enumerate(row)]
    return []


def peek(path: str | os.PathLike, fmt: str | None, encoding: str, default_format: str | None = None) -> Source:
    """Format, encoding and columns of a data path (a file, ``FILE.json#split``, a glob of
    class files or a folder of class folders). Problems are reported in ``note``."""
    path = str(path)
    try:
        fmt = fmt or default_format or layout_of(path) or infer_format(split_path(path)[0])
    except AttnkitError as e:
        return Source(path, "?", encoding, note=str(e))
    src = Source(path, fmt, encoding)
    try:
        if fmt == "files":
            src.note = "files: " + ", ".join(p.name for p in class_files(path))
        elif fmt == "folders":
            src.note = "class folders: " + ", ".join(p.name for p in class_folders(path))
        file = _first_file(path, fmt)
        if file is None or fmt == "mnist":
            return src
        if encoding == AUTO:
            found = detect_encoding(file)
            src.encoding, src.encoding_reason = found.encoding, found.reason
        if fmt == "json":
            with open(file, encoding=src.encoding) as f:
                data = json.load(f)
            src.note = "splits: " + ", ".join(f"{k} ({len(v)})" for k, v in data.items() if isinstance(v, list))
        else:
            src.columns = _columns(file, fmt, src.encoding)
    except (AttnkitError, OSError, ValueError) as e:
        src.note = str(e)
    return src
