"""The whole run config: ``task``, ``data``, ``model``, ``train`` (one YAML file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import checked, from_dict, positive, unit_interval
from ..errors import ConfigError
from ..models import TASKS, ModelConfig
from ..train import TrainConfig


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


@dataclass
class RunConfig:
    """A run: what to learn (``task``), from what (``data``), with what (``model``), how (``train``)."""

    task: str = "text_classification"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None

    def validate(self, where: str = ""):
        """Check the task name."""
        TASKS.get(self.task, where="task")


def run_config(data: dict) -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig`."""
    return from_dict(RunConfig, data)
