"""The ``data:`` section of a run config."""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from ..config import checked, positive, unit_interval
from ..errors import ConfigError
from .readers import TABLE_FORMATS
from .vocab import TOKENIZERS

OTHER_FORMATS = ("conll", "mnist")  # read by the tagging and image tasks


@dataclass
class DataConfig:
    """The ``data:`` section. Files are read relative to the current directory; either
    ``builtin`` names an embedded data set or ``train`` (and optionally ``dev``/``test``)
    name files. Without ``dev``, ``dev_fraction`` of train is held out (seeded)."""

    builtin: str | None = None
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: str | None = None  # tsv, csv, jsonl (default: from the suffix), conll, mnist
    text_column: str = "text"
    label_column: str = "label"
    token_column: int = 0
    tag_column: int = -1
    scheme: str = "bio"  # conll tags: bio, iob1 (converted to BIO), none
    tokenizer: str = "whitespace"
    lowercase: bool = False
    min_freq: int = checked(1, positive)
    max_vocab: int | None = checked(None, positive)
    max_len: int | None = checked(None, positive)
    max_word_len: int | None = checked(20, positive)
    dev_fraction: float = checked(0.1, unit_interval)
    test_fraction: float = checked(0.0, unit_interval)  # without data.test: hold out this share of train as test
    out_of_scope: str | None = None  # a label meaning "none of the others" (CLINC150 oos): report its recall
    on_error: Literal["raise", "skip"] = "raise"
    encoding: str = "utf-8"

    def validate(self, where: str = "data"):
        """Exactly one source: ``builtin`` or ``train``."""
        if (self.builtin is None) == (self.train is None):
            raise ConfigError(f"{where}: give either builtin: NAME or train: FILE (and optionally dev/test)")
        TOKENIZERS.get(self.tokenizer, where=f"{where}.tokenizer")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"{where}.encoding: unknown encoding {self.encoding!r} (e.g. utf-8, cp1252, "
                              f"latin-1, utf-16)") from None
        known = [*TABLE_FORMATS.names(), *OTHER_FORMATS]
        if self.format is not None and self.format not in known:
            raise ConfigError(f"{where}.format: unknown format {self.format!r}; known: {', '.join(known)}")
