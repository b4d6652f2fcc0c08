"""From a ``data:`` config to data sets, vocabularies and the sizes a model needs, per task.

Vocabularies are built from the training split only and saved with the run, so a run
directory can encode new text by itself (``attnkit predict``)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import data as D
from ..errors import ConfigError, DataError
from ..registry import Registry
from .config import DataConfig, RunConfig

PREPARERS: Registry = Registry("task")


@dataclass
class Prepared:
    """Everything the trainer and the run directory need from the data."""

    train: object
    dev: object
    test: object | None
    label_names: list[str]
    sizes: dict
    vocabs: dict = field(default_factory=dict)  # file name -> Vocab/LabelVocab, saved with the run
    stats: dict = field(default_factory=dict)  # e.g. image mean/std, saved in the run meta


def _path(p: str | None, key: str) -> Path | None:
    if p is None:
        return None
    path = Path(p).expanduser()
    file, _ = D.readers.split_path(path)  # FILE.json#split selects splits of a JSON file
    if not file.exists():
        raise DataError(f"data.{key}: {file} not found (paths are relative to the current directory "
                        f"{Path.cwd()})")
    return path


def _holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (train, dev) indices."""
    if fraction <= 0:
        raise ConfigError("data.dev_fraction: must be > 0 when no data.dev file is given")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


def _subset_table(t: D.TableData, idx: list[int]) -> D.TableData:
    return D.TableData(path=t.path, texts=[t.texts[i] for i in idx],
                       labels=None if t.labels is None else [t.labels[i] for i in idx],
                       lines=[t.lines[i] for i in idx])


def _subset_conll(d: D.ConllData, idx: list[int]) -> D.ConllData:
    return D.ConllData(path=d.path, sentences=[d.sentences[i] for i in idx], tags=[d.tags[i] for i in idx],
                       lines=[d.lines[i] for i in idx])


def _read_tables(c: DataConfig, seed: int) -> tuple[D.TableData, D.TableData, D.TableData | None]:
    if c.builtin is not None:
        splits = D.builtin_dataset(c.builtin, seed=seed)
        return splits["train"], splits["dev"], splits.get("test")

    def read(key):
        p = _path(getattr(c, key), key)
        if p is None:
            return None
        table = D.read_table(p, c.text_column, c.label_column, fmt=c.format, on_error=c.on_error,
                             encoding=c.encoding)
        report_skipped(table, key)
        return table
    train, dev, test = read("train"), read("dev"), read("test")
    if test is None and c.test_fraction > 0:  # held out first, as a fraction of all of train
        tr, ts = _holdout(len(train.texts), c.test_fraction, seed + 1)
        n = len(train.texts)
        train, test = _subset_table(train, tr), _subset_table(train, ts)
        if dev is None:  # dev_fraction stays a fraction of the original file: 80/10/10
            c = replace(c, dev_fraction=min(c.dev_fraction * n / len(train.texts), 0.99))
    if dev is None:
        tr, dv = _holdout(len(train.texts), c.dev_fraction, seed)
        train, dev = _subset_table(train, tr), _subset_table(train, dv)
    return train, dev, test


@PREPARERS.register("text_classification")
def prepare_text(cfg: RunConfig) -> Prepared:
    """Tables -> word vocabulary and labels from train -> TextClassificationData."""
    c = cfg.data
    train, dev, test = _read_tables(c, cfg.train.seed)
    tokenize = D.get_tokenizer(c.tokenizer)
    vocab = D.Vocab.build((tokenize(t) for t in train.texts), lowercase=c.lowercase, min_freq=c.min_freq,
                          max_size=c.max_vocab)
    labels = D.LabelVocab.build(train.labels)

    def make(t):
        return None if t is None else D.TextClassificationData.from_table(
            t, vocab, labels, tokenizer=c.tokenizer, max_len=c.max_len)
    return Prepared(make(train), make(dev), make(test), list(labels.itos),
                    {"vocab_size": len(vocab), "num_classes": len(labels)}, {"vocab.json": vocab, "labels.json": labels})


def _read_conll_splits(cfg: RunConfig) -> tuple[D.ConllData, D.ConllData, D.ConllData | None]:
    c = cfg.data
    if c.builtin is not None:
        raise ConfigError("data.builtin: no embedded tagging data set; give data.train: FILE (CoNLL)")

    def read(key):
        p = _path(getattr(c, key), key)
        if p is None:
            return None
        conll = D.read_conll(p, token_column=c.token_column, tag_column=c.tag_column, scheme=c.scheme,
                             on_error=c.on_error, encoding=c.encoding)
        report_skipped(conll, key)
        return conll
    train, dev, test = read("train"), read("dev"), read("test")
    if dev is None:
        tr, dv = _holdout(len(train.sentences), c.dev_fraction, cfg.train.seed)
        train, dev = _subset_conll(train, tr), _subset_conll(train, dv)
    return train, dev, test


@PREPARERS.register("token_classification")
def prepare_tagging(cfg: RunConfig) -> Prepared:
    """CoNLL files -> word/char vocabularies and tags from train -> TokenTaggingData."""
    c = cfg.data
    train, dev, test = _read_conll_splits(cfg)
    vocab = D.Vocab.build(train.sentences, lowercase=c.lowercase, min_freq=c.min_freq, max_size=c.max_vocab)
    tags = D.LabelVocab.build(t for s in train.tags for t in s)
    chars = D.CharVocab.build(train.sentences) if cfg.model.chars is not None else None
    vocabs = {"vocab.json": vocab, "labels.json": tags}
    if chars is not None:
        vocabs["chars.json"] = chars

    def make(d):
        return None if d is None else D.TokenTaggingData.from_conll(d, vocab, tags, chars,
                                                                    max_word_len=c.max_word_len)
    sizes = {"vocab_size": len(vocab), "num_classes": len(tags),
             "char_vocab_size": len(chars) if chars is not None else None}
    return Prepared(make(train), make(dev), make(test), list(tags.itos), sizes, vocabs)


@PREPARERS.register("image_classification")
def prepare_images(cfg: RunConfig) -> Prepared:
    """An MNIST-style folder (train/test IDX files) -> normalised ImageData; dev held out
    from train (``data.dev_fraction``)."""
    c = cfg.data
    if c.builtin is not None or c.format not in (None, "mnist"):
        raise ConfigError("data: image classification reads an MNIST-style folder: data.train: FOLDER, "
                          "format: mnist")
    folder = _path(c.train, "train")
    images, labels = D.read_mnist(folder, "train")
    tr, dv = _holdout(len(images), c.dev_fraction, cfg.train.seed)
    mean, std = D.ImageData.stats(images[tr])
    test = None
    test_folder = _path(c.test, "test") or folder
    try:
        test_images, test_labels = D.read_mnist(test_folder, "test")
        test = D.ImageData(test_images, test_labels, mean=mean, std=std)
    except DataError:
        if c.test is not None:
            raise
    names = [str(i) for i in range(int(labels.max()) + 1)]
    in_channels = 1 if images.ndim == 3 else images.shape[1]
    return Prepared(D.ImageData(images[tr], labels[tr], mean=mean, std=std),
                    D.ImageData(images[dv], labels[dv], mean=mean, std=std), test, names,
                    {"num_classes": len(names), "in_channels": in_channels}, {"labels.json": D.LabelVocab(names)},
                    {"mean": mean, "std": std})


def report_skipped(data, key: str) -> None:
    """With ``on_error: skip``, say how much was skipped and why (first reasons)."""
    n = getattr(data, "skipped", 0)
    if n:
        reasons = "; ".join(getattr(data, "skip_reasons", [])[:3])
        print(f"data.{key}: skipped {n} bad entries of {data.path} (on_error: skip): {reasons}", file=sys.stderr)


PRETRAINED_PREPARERS: Registry = Registry("task")


def load_tokenizer(cfg: RunConfig):
    """The tokenizer of ``model.pretrained``."""
    from ..models.pretrained import load_tokenizer as load

    return load(cfg.model.pretrained)


def _pretrained_files(tokenizer) -> dict:
    from ..finetune.data import SavedWithRun

    return {"tokenizer": SavedWithRun(tokenizer)}


@PRETRAINED_PREPARERS.register("text_classification")
def prepare_pretrained_text(cfg: RunConfig) -> Prepared:
    """Tables -> labels from train -> word pieces of the backbone's tokenizer."""
    from ..finetune.data import text_data_from_table

    train, dev, test = _read_tables(cfg.data, cfg.train.seed)
    tokenizer = load_tokenizer(cfg)
    labels = D.LabelVocab.build(train.labels)

    def make(t):
        return None if t is None else text_data_from_table(tokenizer, t, labels, cfg.model.finetune.max_len)
    return Prepared(make(train), make(dev), make(test), list(labels.itos), {"num_classes": len(labels)},
                    {"labels.json": labels, **_pretrained_files(tokenizer)})


@PRETRAINED_PREPARERS.register("token_classification")
def prepare_pretrained_tagging(cfg: RunConfig) -> Prepared:
    """CoNLL files -> tags from train -> word pieces aligned to words (first piece tagged)."""
    from ..finetune.data import WordPieceTaggingData

    train, dev, test = _read_conll_splits(cfg)
    tokenizer = load_tokenizer(cfg)
    tags = D.LabelVocab.build(t for s in train.tags for t in s)

    def make(d):
        return None if d is None else WordPieceTaggingData.from_conll(tokenizer, d, tags, cfg.model.finetune.max_len)
    return Prepared(make(train), make(dev), make(test), list(tags.itos), {"num_classes": len(tags)},
                    {"labels.json": tags, **_pretrained_files(tokenizer)})


def prepare(cfg: RunConfig) -> Prepared:
    """Data sets and vocabularies for ``cfg.task`` (word pieces with ``model.pretrained``)."""
    if cfg.model.pretrained is not None:
        return PRETRAINED_PREPARERS.get(cfg.task, where="task (with model.pretrained)")(cfg)
    return PREPARERS.get(cfg.task, where="task")(cfg)


RAW_SPLITS: Registry = Registry("task")


@RAW_SPLITS.register("text_classification")
def _raw_text(cfg: RunConfig, split: str) -> tuple[list, list[str]]:
    table = dict(zip(("train", "dev", "test"), _read_tables(cfg.data, cfg.train.seed)))[split]
    return (list(table.texts), [str(x) for x in table.labels]) if table is not None else ([], [])


@RAW_SPLITS.register("token_classification")
def _raw_conll(cfg: RunConfig, split: str) -> tuple[list, list[list[str]]]:
    data = dict(zip(("train", "dev", "test"), _read_conll_splits(cfg)))[split]
    return ([" ".join(s) for s in data.sentences], [list(t) for t in data.tags]) if data is not None else ([], [])


@RAW_SPLITS.register("image_classification")
def _raw_images(cfg: RunConfig, split: str) -> tuple[list, list[str]]:
    folder = _path(cfg.data.train, "train")
    images, labels = D.read_mnist(folder, "train")
    idx = dict(zip(("train", "dev"), _holdout(len(images), cfg.data.dev_fraction, cfg.train.seed))).get(split)
    if idx is None:
        images, labels = D.read_mnist(_path(cfg.data.test, "test") or folder, "test")
        idx = list(range(len(images)))
    return [images[i] for i in idx], [str(int(labels[i])) for i in idx]


def raw_split(cfg: RunConfig, split: str = "dev") -> tuple[list, list]:
    """A split as the user wrote it: ``(inputs, gold)`` with texts (a tagger's sentences as
    space-joined words) or raw images, and label names (a tagger: tag lists). Reads the
    data files again, with the run's seeds, so held-out splits are the same."""
    return RAW_SPLITS.get(cfg.task, where="task")(cfg, split)
