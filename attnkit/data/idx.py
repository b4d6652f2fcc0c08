"""IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

An IDX file is a big-endian int32 magic number (``2051`` images, ``2049`` labels), one
big-endian int32 per dimension, then the uint8 values in row-major order.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ._common import existing_file

IDX_KINDS = {2051: ("images", 3), 2049: ("labels", 1)}  # magic -> (what, dimensions)
MNIST_PREFIXES = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain, detected from its first bytes): images as a
    uint8 array ``(n, rows, cols)``, labels as ``(n,)``. The byte length must be exact."""
    p = existing_file(path)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{p}: damaged gzip file ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{p}: {len(raw)} bytes, too short for an IDX header (empty file?)")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic not in IDX_KINDS:
        known = ", ".join(f"{m} ({what})" for m, (what, _) in IDX_KINDS.items())
        raise DataError(f"{p}: byte 0: magic number {magic} is not an IDX uint8 magic; "
                        f"expected {known}")
    what, ndim = IDX_KINDS[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: {len(raw)} bytes, truncated inside the {header}-byte header")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataError(f"{p}: {problem}: {what} of shape {tuple(dims)} need {expected} "
                        f"bytes, the file has {len(raw)}")
    # copy: frombuffer over bytes is read-only, and torch.from_numpy warns on that
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def _find(folder: Path, prefix: str, kind: str, idx: str) -> Path:
    """The first existing spelling of an MNIST file name (``-`` or ``.``, ``.gz`` or not)."""
    names = [f"{prefix}-{kind}{sep}{idx}-ubyte{gz}" for sep in "-." for gz in (".gz", "")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {prefix} {kind} file; looked for {', '.join(names)}")


def read_mnist(folder: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images (n, 28, 28) uint8, labels (n,) uint8)`` of one split of MNIST (or anything
    with its file names, such as Fashion-MNIST) in ``folder``."""
    if split not in MNIST_PREFIXES:
        raise ConfigError(f"split must be one of {', '.join(MNIST_PREFIXES)}; got {split!r}")
    prefix = MNIST_PREFIXES[split]
    image_path = _find(Path(folder), prefix, "images", "idx3")
    label_path = _find(Path(folder), prefix, "labels", "idx1")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{image_path} / {label_path}: expected images then labels, found "
                        f"arrays of {images.ndim} and {labels.ndim} dimensions")
    if len(images) != len(labels):
        raise DataError(f"{image_path} has {len(images)} images but {label_path} has "
                        f"{len(labels)} labels")
    return images, labels
