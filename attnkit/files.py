"""Writing files so that a kill at any moment leaves the old file or the new one, never half
of one: write a temporary file beside the target, flush it to disk, rename it over the
target (``os.replace`` is atomic). Every file attnkit writes for later reading goes here."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import WriteError

TMP_SUFFIX = ".tmp"  # temporary files are ".NAME.XXXX.tmp" beside their target


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary_file)`` on a temp file beside ``path``, fsync it, rename it to ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file gets the permissions open() would give
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, read-only, no permission: one line, and say what is safe
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise WriteError(f"{path}: could not be written ({e.strerror or e}); {kept}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cache_root() -> Path:
    """attnkit's per-user cache (``~/.cache/attnkit``; ``ATTNKIT_CACHE`` moves it): what a later
    run may reuse instead of measuring or computing it again."""
    return Path(os.environ.get("ATTNKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "attnkit"))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Atomic JSON write (UTF-8, non-ASCII kept as is, trailing newline)."""
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")
