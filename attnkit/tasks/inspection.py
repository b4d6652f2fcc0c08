"""Checking data against its config before training: ``attnkit inspect-data`` prints what it
found, and ``attnkit train`` runs the same checks first (nothing is written until they pass).

One function, :func:`check_splits`, looks at the splits a task has read and returns the
problems (training would fail or mean nothing) and warnings (it runs, but look). It uses only
the task protocol (``examples``), so it works for every task."""
from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data import get_tokenizer
from ..data.peek import Source, peek
from ..errors import AttnkitError, DataError
from .registry import get_task
from .splits import SPLITS

log = logging.getLogger("attnkit")
SHOWN = 5  # labels / problems shown by name


@dataclass
class SplitFacts:
    """What one split holds."""

    key: str
    origin: str  # a path, "held out of train", "builtin NAME" or "not given"
    count: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)  # words per text
    source: Source | None = None


@dataclass
class DataReport:
    """The splits, and what would stop training (``problems``) or deserves a look (``warnings``)."""

    splits: list[SplitFacts]
    problems: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        """Whether training may start."""
        return not self.problems

    def lines(self) -> list[str]:
        """The report as plain text lines."""
        out = []
        for s in self.splits:
            out.append(f"{s.key}: {s.origin}")
            if s.source is not None:
                src = s.source
                enc = src.encoding + (f" ({src.encoding_reason})" if src.encoding_reason else "")
                out.append(f"  format {src.format}, encoding {enc}")
                if src.columns:
                    out.append(f"  columns: {', '.join(src.columns)}")
                if src.note:
                    out.append(f"  {src.note}")
            if not s.count:
                continue
            skipped = f" ({s.skipped} skipped)" if s.skipped else ""
            out.append(f"  {s.count:,} examples{skipped}")
            if s.labels:
                shown = ", ".join(f"{k} {v:,}" for k, v in s.labels.most_common(8))
                more = f", ... ({len(s.labels)} in all)" if len(s.labels) > 8 else ""
                out.append(f"  labels ({len(s.labels)}): {shown}{more}")
            if s.lengths:
                q = sorted(s.lengths)
                out.append(f"  words per text: min {q[0]}, median {statistics.median(q):g}, "
                           f"95% {q[int(0.95 * (len(q) - 1))]}, max {q[-1]}")
        out += [f"problem: {p}" for p in self.problems] + [f"warning: {w}" for w in self.warnings]
        if self.ok:
            out.append("ok: training can start")
        return out

    def error(self, what: str = "the data does not fit the config") -> DataError:
        """The one-line error for a report with problems: the first, and how many more."""
        more = len(self.problems) - 1
        rest = f" (and {more} more problem(s): `attnkit inspect-data CONFIG` lists them all)" if more else ""
        return DataError(f"{what}: {self.problems[0]}{rest}")


def _flat(g) -> list[str]:
    """One example's gold answers as strings (a tag list, or one label)."""
    return [str(t) for t in (g if isinstance(g, list) else [g])]


def _facts(task, key: str, raw, origin: str, words=None) -> SplitFacts:
    """What a raw split holds; words per text only when ``words`` (a tokenizer) is given."""
    if raw is None:
        return SplitFacts(key, origin)
    inputs, gold = task.examples(raw)
    lengths = [len(words(x)) for x in inputs] if words and inputs and isinstance(inputs[0], str) else []
    return SplitFacts(key, origin, len(inputs), getattr(raw, "skipped", 0), list(getattr(raw, "skip_reasons", [])),
                      Counter(t for g in gold for t in _flat(g)) if task.counts_gold else Counter(), lengths)


def _where(raw, key: str, unseen: set[str], task) -> str:
    """``FILE:LINE`` of the first example of ``raw`` with an unseen label."""
    _, gold = task.examples(raw)
    lines = getattr(raw, "lines", None)
    for i, g in enumerate(gold):
        if unseen.intersection(_flat(g)):
            return f"{raw.path}:{lines[i]}" if lines is not None and hasattr(raw, "path") else f"{key} example {i + 1}"
    return key


def check_splits(task, cfg, splits: dict, lengths: bool = True) -> tuple[list[str], list[str], dict[str, SplitFacts]]:
    """Problems and warnings of read splits (``{"train": raw, "dev": raw, "test": raw|None}``)
    against the config, and the facts of each split (``lengths``: count words per text even
    when ``data.max_len`` does not need them, for the report)."""
    c = cfg.data
    words = None
    if lengths or getattr(c, "max_len", None):
        words = get_tokenizer(c.tokenizer) if task.data_format is None else str.split  # CoNLL words are given
    facts = {k: _facts(task, k, splits.get(k), "", words) for k in SPLITS}
    problems, warnings = [], []
    train = facts["train"].labels
    single = task.target == "labels"
    if single and len(train) < 2 and facts["train"].count:
        problems.append(f"train has one label only ({next(iter(train), '?')!r}): a classifier needs two or more; "
                        f"is data.label_column ({c.label_column!r}) the label?")
    if single and len(train) > 20 and len(train) > 0.5 * facts["train"].count:
        warnings.append(f"{len(train):,} different labels in {facts['train'].count:,} training examples: is "
                        f"data.label_column ({c.label_column!r}) the label and not a text?")
    oos = getattr(c, "out_of_scope", None)
    if oos is not None and oos not in train:
        problems.append(f"data.out_of_scope: {oos!r} is not a label of the training data (labels: "
                        f"{', '.join(map(repr, sorted(train)[:SHOWN]))}{' ...' if len(train) > SHOWN else ''}); "
                        f"set data.out_of_scope=null if the data has no out-of-scope class"
                        + (f" (and train.metric, now {cfg.train.metric!r})" if cfg.train.metric in
                           ("in_scope_accuracy", "oos_recall", "oos_precision") else ""))
    for key in ("dev", "test") if task.categorical else ():
        unseen = set(facts[key].labels) - set(train)
        if unseen and splits.get(key) is not None:
            names = sorted(unseen, key=lambda t: -facts[key].labels[t])
            shown = ", ".join(f"{t!r} ({facts[key].labels[t]:,})" for t in names[:SHOWN])
            problems.append(f"{key}: label(s) never seen in train: {shown}{' ...' if len(names) > SHOWN else ''}; "
                            f"first at {_where(splits[key], key, unseen, task)}")
    for key, f in facts.items():
        if f.skipped:
            warnings.append(f"data.{key}: skipped {f.skipped:,} bad entries of {splits[key].path} (on_error: skip); "
                            f"first: " + "; ".join(f.skip_reasons[:2]))
        if f.lengths and getattr(c, "max_len", None):
            cut = sum(n > c.max_len for n in f.lengths)
            if cut:
                warnings.append(f"{key}: {cut:,} of {f.count:,} texts are longer than data.max_len = {c.max_len} "
                                f"words and will be cut")
    if splits.get("dev") is not None and not facts["dev"].count:
        problems.append("dev: no examples")
    return problems, warnings, facts


def _origins(cfg) -> dict[str, str]:
    c = cfg.data
    if c.builtin is not None:
        return {k: f"builtin {c.builtin} ({k} split)" for k in SPLITS}
    out = {k: str(getattr(c, k)) for k in SPLITS if getattr(c, k) is not None}
    out.setdefault("dev", f"held out of train ({c.dev_fraction:g}, seeded)")
    out.setdefault("test", f"held out of train ({c.test_fraction:g}, seeded)" if c.test_fraction else "not given")
    return out


def inspect_data(cfg) -> DataReport:
    """Read the data as ``cfg`` says and check it (never raises on bad data: it is reported)."""
    task = get_task(cfg.task)
    origins = _origins(cfg)
    text = task.inputs == "text"  # formats, encodings and columns are what text files have
    sources = {k: peek(v, cfg.data.format, cfg.data.encoding, task.data_format) for k, v in origins.items()
               if text and cfg.data.builtin is None and getattr(cfg.data, k) is not None}
    try:
        train, dev, test = task.read_splits(cfg)
    except (AttnkitError, OSError) as e:
        splits = [SplitFacts(k, origins[k], source=sources.get(k)) for k in SPLITS]
        return DataReport(splits, [str(e)], _if_skipped(task, cfg))
    problems, warnings, facts = check_splits(task, cfg, {"train": train, "dev": dev, "test": test})
    for k, f in facts.items():
        f.origin, f.source = origins[k], sources.get(k)
    return DataReport(list(facts.values()), problems, warnings)


def _if_skipped(task, cfg) -> list[str]:
    """With ``on_error: raise`` stopped by a bad entry: what ``skip`` would skip (a warning each)."""
    if cfg.data.on_error != "raise":
        return []
    try:
        splits = task.read_splits(replace(cfg, data=replace(cfg.data, on_error="skip")))
    except (AttnkitError, OSError):
        return []
    return [f"{key}: with data.on_error=skip, {raw.skipped:,} bad entries would be skipped; first: "
            + "; ".join(raw.skip_reasons[:2])
            for key, raw in zip(SPLITS, splits) if raw is not None and getattr(raw, "skipped", 0)]


def preflight(task, cfg, train, dev, test) -> None:
    """The checks of :func:`inspect_data` on splits already read: warnings are logged; problems
    stop with one line naming the first and how many more (``attnkit inspect-data CONFIG``
    lists them all)."""
    problems, warnings, facts = check_splits(task, cfg, {"train": train, "dev": dev, "test": test}, lengths=False)
    for w in warnings:
        log.warning(w)
    if problems:
        raise DataReport(list(facts.values()), problems, warnings).error(
            "the data does not fit the config, nothing was written")


def is_config_path(path: str | Path) -> bool:
    """Whether a CLI argument names a run config (YAML) rather than a data file."""
    return Path(str(path)).suffix.lower() in (".yaml", ".yml")
