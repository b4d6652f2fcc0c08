"""Helpers shared by the readers: opening files, decoding line by line, collecting problems."""
from __future__ import annotations

import codecs
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError, DataError
from .encodings import AUTO, decode_advice, resolve_encoding

ON_ERROR_MODES = ("raise", "skip")
MAX_REASONS = 5  # enough to see a pattern without flooding a log


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; a missing file or a directory is a DataError naming it."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    return p


def codec_name(encoding: str) -> str:
    """The codec's canonical name (``auto`` stays ``auto``); an unknown encoding is a ConfigError."""
    if encoding == AUTO:
        return AUTO
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}") from None


def numbered_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with the line ending kept (csv needs it).

    Lines are decoded one at a time, rather than by a text-mode file, so that a decoding
    error names the exact line instead of the start of an 8 KiB chunk. UTF-16/32 are not
    ASCII-compatible (a byte 0x0a is not a line end), so those files are decoded whole first.
    ``encoding="auto"`` detects the encoding first (:mod:`attnkit.data.encodings`).
    """
    detected = encoding == AUTO
    encoding = resolve_encoding(path, encoding)
    wide = codec_name(encoding).startswith(("utf-16", "utf-32"))
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(_wide_lines(path, f, encoding, detected) if wide else f, start=1):
                text = line if wide else _decode_line(path, number, line, encoding, detected)
                if number == 1:
                    text = text.removeprefix("\ufeff")  # a BOM would rename the first column
                yield number, text
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: damaged gzip file ({e})") from None


def _decode_line(path: Path, number: int, raw: bytes, encoding: str, detected: bool = False) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{number}: cannot decode byte {raw[e.start]:#04x} (column {e.start + 1}) as "
                        f"{encoding}; {decode_advice(detected)}") from None


def _wide_lines(path: Path, f, encoding: str, detected: bool = False) -> list[str]:
    """A UTF-16/32 file's lines, decoded whole."""
    try:
        return f.read().decode(encoding).splitlines(keepends=True)
    except UnicodeError as e:
        raise DataError(f"{path}: cannot be read as {encoding} ({e}); {decode_advice(detected)}") from None


class Problems:
    """Raises on the first bad line (``on_error="raise"``) or counts and skips (``"skip"``)."""

    def __init__(self, path: Path, on_error: str):
        if on_error not in ON_ERROR_MODES:
            raise ConfigError(
                f"on_error must be one of {', '.join(ON_ERROR_MODES)}; got {on_error!r}"
            )
        self.path = path
        self.on_error = on_error
        self.skipped = 0
        self.reasons: list[str] = []

    def bad(self, line: int | None, problem: str, path: Path | None = None) -> None:
        """Report ``problem`` at ``line`` (None: the whole file): raise, or count it as one skipped item."""
        message = f"{path or self.path}{'' if line is None else f':{line}'}: {problem}"
        if self.on_error == "raise":
            raise DataError(message)
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(message)

    def nothing_left(self, what: str) -> DataError:
        """The error for a file that yielded no usable items."""
        if self.skipped:
            return DataError(
                f"{self.path}: no usable {what}; {self.skipped} skipped, first: "
                + "; ".join(self.reasons)
            )
        return DataError(f"{self.path}: no {what} (empty file?)")
