"""Which text encoding a data file is in: ``encoding: auto``.

The rule, in order (measured in ``benchmarks/encoding_detection.py``):

1. a byte-order mark names UTF-8, UTF-16 or UTF-32;
2. UTF-16 without a mark when every other byte is NUL; bytes that decode as UTF-8 are UTF-8 (other encodings almost never produce valid UTF-8
   by accident once a file has a few non-ASCII letters);
3. otherwise charset-normalizer (a well-kept detector) names the code page; when it names a
   Western one (Latin-1, Windows-1252, Latin-9) the choice between them is made here, because a
   detector cannot tell them apart from letters alone: Windows-1252 when the bytes decode in
   it (it is Latin-1 with printable characters — curly quotes, dashes, the euro sign — where
   Latin-1 has invisible C1 control codes, which real text does not contain), else Latin-1.

The detected encoding is logged once per file and reported by ``attnkit inspect-data``.
"""
from __future__ import annotations

import codecs
import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("attnkit")
AUTO = "auto"
WESTERN = {"iso8859_1", "iso8859_15", "cp1252"}  # codecs.lookup names, "-" as "_"
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
SAMPLE_BYTES = 1 << 20  # the detector reads at most this much of a file that is not UTF-8
CHUNK = 1 << 20


@dataclass(frozen=True)
class Detected:
    """An encoding and why it was chosen."""

    encoding: str
    reason: str


_cache: dict[tuple, Detected] = {}
_logged: set[str] = set()  # files whose detected encoding was logged


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _first_non_utf8(path: Path) -> int | None:
    """The offset of the first byte that is not UTF-8 (None: the whole file is UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with _open(path) as f:
        while chunk := f.read(CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                return offset + max(e.start, 0)
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return offset
    return None


def _sample_around(path: Path, offset: int) -> bytes:
    """``SAMPLE_BYTES`` of the file centred on ``offset`` (where the non-UTF-8 bytes are)."""
    start = max(0, offset - SAMPLE_BYTES // 2)
    with _open(path) as f:
        f.seek(start)
        return f.read(SAMPLE_BYTES)


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a byte-order mark: most of the odd (LE) or even (BE) bytes are NUL."""
    if len(head) < 8 or b"\x00" not in head:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def western(sample: bytes) -> Detected:
    """Windows-1252 when the bytes decode in it, else Latin-1 (see the module docstring)."""
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return Detected("latin-1", "not UTF-8; bytes undefined in Windows-1252, so Latin-1")
    has_c1 = any(0x80 <= b <= 0x9F for b in sample)
    why = "bytes 0x80-0x9F are Windows-1252 punctuation" if has_c1 else "Windows-1252 (same letters as Latin-1)"
    return Detected("cp1252", f"not UTF-8; {why}")


def detect_encoding(path: str | Path) -> Detected:
    """The encoding of a text file (gzip allowed) by the rule in the module docstring."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        _cache[key] = _detect(path)
    return _cache[key]


def _detect(path: Path) -> Detected:
    with _open(path) as f:
        head = f.read(SAMPLE_BYTES)
    for bom, name in BOMS:
        if head.startswith(bom):
            return Detected(name, "byte-order mark")
    wide = _utf16_without_bom(head)
    if wide is not None:
        return Detected(wide, "NUL bytes in every other place: UTF-16 without a byte-order mark")
    bad = _first_non_utf8(path)
    if bad is None:
        return Detected("utf-8", "valid UTF-8")
    import charset_normalizer

    head = head if bad < len(head) else _sample_around(path, bad)
    matches = [m for m in charset_normalizer.from_bytes(head) if _norm(m.encoding) not in ("ascii", "utf_8")]
    if not matches:
        return western(head)
    # a Western code page that reads the bytes as well as the best match does (same text, no
    # more "chaos"): the detector cannot tell those apart from letters, so the rule above decides
    close = [m for m in matches if m.chaos <= matches[0].chaos + 0.01]
    if any(_norm(c) in WESTERN for m in close for c in m.could_be_from_charset):
        return western(head)
    return Detected(codecs.lookup(matches[0].encoding).name, "not UTF-8; charset-normalizer's best match")


def _norm(name: str) -> str:
    try:
        return codecs.lookup(name).name.replace("-", "_")
    except LookupError:
        return name


def resolve_encoding(path: str | Path, encoding: str) -> str:
    """``encoding``, or with ``"auto"`` the detected one (logged once per file)."""
    if encoding != AUTO:
        return encoding
    found = detect_encoding(path)
    if found.encoding != "utf-8" and str(path) not in _logged:
        _logged.add(str(path))
        log.info(f"{path}: read as {found.encoding} ({found.reason}; encoding: auto)")
    return found.encoding


def decode_advice(detected: bool = False) -> str:
    """What to do when a file does not decode (``detected``: the encoding came from ``auto``)."""
    where = "(data.encoding in a config, --encoding on the command line)"
    if detected:
        return f"the detected encoding is wrong for this line: name the file's encoding {where}: cp1252, latin-1 ..."
    return f"set the encoding to auto {where} to detect it, or name it: cp1252 for most Windows files, latin-1, utf-16 ..."
