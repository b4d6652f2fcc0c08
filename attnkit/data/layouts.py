"""Data sets whose labels are in file or folder names, not in a column.

* ``files`` — one file per class, one text per line: ``rt-polarity.pos`` and
  ``rt-polarity.neg`` (give the glob ``rt-polarity.*``), or ``pos.txt`` and ``neg.txt``. The
  label is the file name without ``.gz`` and ``.txt``: its last suffix when it still has one
  (``rt-polarity.pos`` -> ``pos``), else the whole name (``pos.txt`` -> ``pos``).
* ``folders`` — one folder per class, one text per file: ``train/pos/0_9.txt`` (the IMDb
  archive's layout). The label is the folder's name. (Images in class folders are read by
  :mod:`attnkit.data.images`.)

Both give a :class:`~attnkit.data.readers.TableData` like any table, so everything after
reading is the same.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import DataError
from ._common import Problems, numbered_lines
from .readers import TableData
from .vocab import LabelVocab

LAYOUTS = ("files", "folders")
TEXT_SUFFIXES = (".gz", ".txt", ".text")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GLOB_CHARS = "*?"  # not "[": file names hold brackets far more often than patterns need them


def is_glob(path: str | os.PathLike) -> bool:
    """Whether a path is a glob pattern (``*`` or ``?`` in its name) rather than one file
    (a path that exists, or ``FILE.json#split``, never is)."""
    text = str(path)
    if Path(text).exists() or "#" in text:
        return False
    return any(ch in Path(text).name for ch in GLOB_CHARS)


def layout_of(path: str | os.PathLike) -> str | None:
    """``folders`` for a directory, ``files`` for a glob, None for a plain file."""
    if is_glob(path):
        return "files"
    return "folders" if Path(path).is_dir() else None


def label_of_file(path: str | os.PathLike) -> str:
    """A class file's label (see the module docstring)."""
    name = Path(path).name
    changed = True
    while changed:
        changed = False
        for suffix in TEXT_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name.rsplit(".", 1)[1] if "." in name.strip(".") else name


def _literal_except_wildcards(pattern: str | os.PathLike) -> str:
    """A glob pattern where only ``*`` and ``?`` in the file name are wildcards (the folder,
    and brackets anywhere, are taken literally)."""
    path = Path(os.path.expanduser(str(pattern)))
    name = path.name.replace("[", "[[]")
    return str(Path(glob.escape(str(path.parent))) / name)


def class_files(pattern: str | os.PathLike) -> list[Path]:
    """The files a ``files`` path names: every match of a glob, or the one file."""
    if not is_glob(pattern):
        if not Path(pattern).is_file():
            raise DataError(f"{pattern}: file not found")
        return [Path(pattern)]
    found = sorted(Path(p) for p in glob.glob(_literal_except_wildcards(pattern)) if Path(p).is_file())
    if not found:
        raise DataError(f"{pattern}: no file matches this pattern (relative to {Path.cwd()})")
    return found


def read_label_per_file(pattern: str | os.PathLike, *, on_error: str = "raise",
                        encoding: str = "auto") -> TableData:
    """Texts, one per line, from one file per class; labels from the file names. (``on_error``
    is accepted like every reader's; blank lines are skipped and no other line can be bad.)"""
    files = class_files(pattern)
    labels = [label_of_file(f) for f in files]
    clash = {lab for lab in labels if labels.count(lab) > 1}
    if clash:
        same = [str(f) for f, lab in zip(files, labels) if lab in clash]
        raise DataError(f"{pattern}: files {', '.join(same[:4])} all give the label {min(clash)!r}; one file "
                        f"per class (labels come from the name: rt-polarity.pos -> pos, neg.txt -> neg)")
    texts, out_labels, lines = [], [], []  # no line can be bad: every non-blank line is a text
    for file, label in zip(files, labels):
        for number, text in numbered_lines(file, encoding):
            text = text.strip()
            if not text:
                continue
            texts.append(text)
            out_labels.append(label)
            lines.append(number)
    if not texts:
        raise DataError(f"{pattern}: the files ({', '.join(map(str, files[:4]))}) hold no text")
    return TableData(str(pattern), texts, out_labels, lines)


def subfolders(folder: str | os.PathLike) -> list[Path]:
    """The sub-folders of ``folder`` that are not hidden, in label order (numeric when every
    name is an integer, as :class:`~attnkit.data.LabelVocab` sorts labels)."""
    subs = {p.name: p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")}
    return [subs[name] for name in LabelVocab.build(subs).itos]


def class_folders(folder: str | os.PathLike) -> list[Path]:
    """The class sub-folders of a ``folders`` data set; none is a DataError saying what is there."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    subs = subfolders(root)
    if not subs:
        found = sorted(p.name for p in root.iterdir())[:5]
        raise DataError(f"{root}: no class folders inside (one folder per class, e.g. {root}/pos/1.txt); found: "
                        f"{', '.join(found) or 'nothing'}")
    return subs


def read_folder_per_label(folder: str | os.PathLike, *, on_error: str = "raise",
                          encoding: str = "auto") -> TableData:
    """One text per file, one folder per class; labels are the folder names."""
    problems = Problems(Path(folder), on_error)
    texts, labels, lines = [], [], []
    for sub in class_folders(folder):
        for file in sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")):
            if file.name.lower().endswith(IMAGE_SUFFIXES):
                raise DataError(f"{file}: an image in a text data set; a folder of image class folders is read by "
                                f"task: image_classification")
            try:
                text = "".join(t for _, t in numbered_lines(file, encoding)).strip()
            except DataError as e:
                problems.bad(None, str(e).removeprefix(f"{file}: ").removeprefix(f"{file}:"), path=file)
                continue
            if not text:
                problems.bad(None, "empty file", path=file)
                continue
            texts.append(text)
            labels.append(sub.name)
            lines.append(1)
    if not texts:
        raise problems.nothing_left("text files")
    return TableData(str(folder), texts, labels, lines, problems.skipped, problems.reasons)


READERS = {"files": read_label_per_file, "folders": read_folder_per_label}
