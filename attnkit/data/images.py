"""Image files in one sub-folder per class (``train/cat/001.png``, ``train/dog/002.jpg`` ...).

Every sub-folder of the folder is a class, named after it; its image files (searched in its
sub-folders too) are that class's examples. Hidden files and folders, files lying directly
in the folder and files that are not images are ignored. Grayscale sets stay one channel;
a set with any colour image is read all in RGB.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ._common import Problems
from .layouts import IMAGE_SUFFIXES, subfolders

GRAY_MODES = ("1", "L", "LA", "La", "I", "F")  # PIL modes of one grey band (with alpha, 32-bit)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # 16-bit grey: scaled to 8 bits, not clipped


@dataclass
class ImageFolderData:
    """Images read from a folder of class folders: ``images`` uint8 ``[N, H, W]`` (grayscale)
    or ``[N, 3, H, W]`` (RGB), ``labels[i]`` the index into ``names`` (the class folders) of
    image i, read from ``paths[i]``; ``path`` is the folder."""

    path: str
    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def class_folders(folder: str | os.PathLike) -> list[str]:
    """The names of the sub-folders of ``folder`` that are not hidden, in label order."""
    return [p.name for p in subfolders(folder)]


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (its sub-folders included), hidden ones left out, sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in sorted(files)
                if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return out


def read_image_folder(folder: str | os.PathLike, *, on_error: str = "raise",
                      size: int | None = None) -> ImageFolderData:
    """Read every image under the class folders of ``folder`` (see the module docstring).

    ``size``: resize every image to ``size x size`` (bilinear); without it every image must
    have the same size. A file that is not a readable image is a DataError naming it
    (``on_error="raise"``) or is skipped and counted (``"skip"``)."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"size must be a positive integer (the side of the square images); got {size!r}")
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    problems = Problems(root, on_error)
    names = class_folders(root)
    if not names:
        files = sorted(p.name for p in root.iterdir())
        found = f"{len(files)} files ({', '.join(files[:3])}{' ...' if len(files) > 3 else ''})" if files else "nothing"
        raise DataError(f"{root}: no class folders, found {found}; put the images of each class in a sub-folder "
                        f"named after it ({root}/cat/001.png, {root}/dog/002.png ...), or for an MNIST-style folder "
                        f"of IDX files set data.format: mnist")
    pixels, labels, paths = [], [], []
    first: tuple[Path, tuple[int, int]] | None = None
    for label, name in enumerate(names):
        for path in image_files(root / name):
            image = _open(path, size, problems)
            if image is None:
                continue
            if first is None:
                first = (path, image.size)
            elif size is None and image.size != first[1]:
                raise DataError(f"{path}: image is {_wxh(image.size)} but {first[0]} is {_wxh(first[1])} (width x "
                                f"height); set data.image_size: N (size=N) to resize every image to N x N")
            pixels.append(_pixels(image))
            labels.append(label)
            paths.append(str(path))
    if not pixels:
        if problems.skipped:
            raise problems.nothing_left("images")
        raise DataError(f"{root}: no image files in the class folders {', '.join(names[:5])}"
                        f"{' ...' if len(names) > 5 else ''} (looked for {' '.join(IMAGE_SUFFIXES)})")
    return ImageFolderData(str(root), _stack(pixels), np.asarray(labels, dtype=np.int64), names, paths,
                           problems.skipped, problems.reasons)


def _open(path: Path, size: int | None, problems: Problems):
    """The image at ``path`` in mode ``L`` or ``RGB``, resized to ``size``; None when unreadable (skipped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            image = _eight_bit(im)
        if size is not None:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return image
    except Exception as e:  # noqa: BLE001  (PIL's format plugins raise many kinds on a damaged file)
        problems.bad(None, f"not a readable image ({type(e).__name__}: {e})", path=path)
        return None


def _eight_bit(im):
    """``im`` as mode ``L`` (one grey band) or ``RGB`` (anything with colour)."""
    from PIL import Image

    if im.mode in SIXTEEN_BIT:
        return Image.fromarray(np.rint(np.asarray(im, dtype=np.float64) / 257).astype(np.uint8))
    if im.mode in GRAY_MODES:
        return im.convert("L")
    rgb = im.convert("RGB")
    if im.mode in ("P", "PA"):  # a palette of greys is a grayscale image
        a = np.asarray(rgb)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            return rgb.convert("L")
    return rgb


def _pixels(image) -> np.ndarray:
    """``[H, W]`` (mode L) or ``[3, H, W]`` (RGB) uint8."""
    a = np.asarray(image, dtype=np.uint8)
    return a if a.ndim == 2 else a.transpose(2, 0, 1)


def _stack(pixels: list[np.ndarray]) -> np.ndarray:
    """``[N, H, W]`` when every image is grey, else ``[N, 3, H, W]`` (grey ones repeated)."""
    if all(p.ndim == 2 for p in pixels):
        return np.stack(pixels)
    return np.stack([np.repeat(p[None], 3, axis=0) if p.ndim == 2 else p for p in pixels])


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
