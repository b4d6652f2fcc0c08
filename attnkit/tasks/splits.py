"""Reading a config's train/dev/test files, shared by the tasks: path checks with key paths,
seeded hold-out splits."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .. import data as D
from ..data.layouts import READERS as LAYOUT_READERS
from ..data.layouts import is_glob, layout_of
from ..errors import ConfigError, DataError

SPLITS = ("train", "dev", "test")


def data_path(p: str | None, key: str) -> Path | None:
    """``data.<key>`` as a path that exists (``FILE.json#split`` allowed), or None."""
    if p is None:
        return None
    path = Path(p).expanduser()
    if is_glob(path):  # one file per class: checked by the reader, which names the pattern
        return path
    file, _ = D.readers.split_path(path)  # FILE.json#split selects splits of a JSON file
    if not file.exists():
        raise DataError(f"data.{key}: {file} not found (paths are relative to the current directory "
                        f"{Path.cwd()})")
    return path


def holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (kept, held-out) indices."""
    if fraction <= 0:
        raise ConfigError("data.dev_fraction: must be > 0 when no data.dev file is given")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


def read_split_files(c, read) -> tuple:
    """``read(c, path)`` of ``data.train``, ``data.dev`` and ``data.test`` (None where not given)."""
    out = []
    for key in SPLITS:
        p = data_path(getattr(c, key), key)
        out.append(None if p is None else read(c, p))  # skipped entries: reported by the pre-flight check
    return tuple(out)


def subset_table(t: D.TableData, idx: list[int], skips: bool = False) -> D.TableData:
    """Rows ``idx`` of a table (with the file's skipped-line count when ``skips``)."""
    return D.TableData(path=t.path, texts=[t.texts[i] for i in idx],
                       labels=None if t.labels is None else [t.labels[i] for i in idx],
                       lines=[t.lines[i] for i in idx], skipped=t.skipped if skips else 0,
                       skip_reasons=list(t.skip_reasons) if skips else [])


def subset_conll(d: D.ConllData, idx: list[int], skips: bool = False) -> D.ConllData:
    """Sentences ``idx`` of a CoNLL file (with the file's skipped count when ``skips``)."""
    return D.ConllData(path=d.path, sentences=[d.sentences[i] for i in idx], tags=[d.tags[i] for i in idx],
                       lines=[d.lines[i] for i in idx], skipped=d.skipped if skips else 0,
                       skip_reasons=list(d.skip_reasons) if skips else [])


def read_table_file(c, path) -> D.TableData:
    """One table with the config's columns, format, encoding and error policy; or texts whose
    labels are file or folder names (``format: files/folders``, or a glob / a folder)."""
    fmt = c.format or layout_of(path)
    if fmt is None and c.train is not None and not D.readers.has_table_suffix(path):
        fmt = layout_of(c.train)  # a run trained on class files reads x.neg as one of them
    if fmt in LAYOUT_READERS:
        return LAYOUT_READERS[fmt](path, on_error=c.on_error, encoding=c.encoding)
    return D.read_table(path, c.text_column, c.label_column, fmt=fmt, on_error=c.on_error, encoding=c.encoding)


def read_table_splits(cfg) -> tuple[D.TableData, D.TableData, D.TableData | None]:
    """Tables for train/dev/test (a builtin data set, or files with held-out dev/test)."""
    c, seed = cfg.data, cfg.train.seed
    if c.builtin is not None:
        splits = D.builtin_dataset(c.builtin, seed=seed)
        return splits["train"], splits["dev"], splits.get("test")

    return hold_out_tables(cfg, *read_split_files(c, read_table_file))


def hold_out_tables(cfg, train: D.TableData, dev: D.TableData | None, test: D.TableData | None) -> tuple:
    """``(train, dev, test)`` with test (``data.test_fraction``) and then dev (``data.dev_fraction``)
    held out of train, seeded, where their files are not given."""
    c, seed = cfg.data, cfg.train.seed
    if test is None and c.test_fraction > 0:  # held out first, as a fraction of all of train
        tr, ts = holdout(len(train.texts), c.test_fraction, seed + 1)
        n = len(train.texts)
        train, test = subset_table(train, tr, skips=True), subset_table(train, ts)
        if dev is None:  # dev_fraction stays a fraction of the original file: 80/10/10
            c = replace(c, dev_fraction=min(c.dev_fraction * n / len(train.texts), 0.99))
    if dev is None:
        tr, dv = holdout(len(train.texts), c.dev_fraction, seed)
        train, dev = subset_table(train, tr, skips=True), subset_table(train, dv)
    return train, dev, test


def read_conll_file(c, path) -> D.ConllData:
    """One CoNLL file with the config's columns, scheme, encoding and error policy."""
    return D.read_conll(path, token_column=c.token_column, tag_column=c.tag_column, scheme=c.scheme,
                        on_error=c.on_error, encoding=c.encoding)


def read_conll_splits(cfg) -> tuple[D.ConllData, D.ConllData, D.ConllData | None]:
    """CoNLL train/dev/test (dev held out of train when not given)."""
    c = cfg.data
    if c.builtin is not None:
        raise ConfigError("data.builtin: no embedded tagging data set; give data.train: FILE (CoNLL)")

    train, dev, test = read_split_files(c, read_conll_file)
    if dev is None:
        tr, dv = holdout(len(train.sentences), c.dev_fraction, cfg.train.seed)
        train, dev = subset_conll(train, tr, skips=True), subset_conll(train, dv)
    return train, dev, test
