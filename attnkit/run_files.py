"""The names of the files in a run directory, in one place, and the one reader of
``metrics.jsonl``.

    RUN/config.yaml        the resolved config (every default filled in)
    RUN/meta.json          task, sizes, label names, normalisation stats, versions
    RUN/vocab.json ...     vocabularies built from the training split (chars.json, labels.json)
    RUN/tokenizer/         a pretrained backbone's tokenizer (fine-tuned runs)
    RUN/backbone/          the backbone's config (fine-tuned runs)
    RUN/model.safetensors  the best weights (by the dev metric)
    RUN/checkpoints/       last.pt (resume), best.pt, epoch-N.pt (the last N epochs' weights, averaged
                           at the end with train.average_last)
    RUN/metrics.jsonl      one record per logged step/epoch; RUN/events/ for TensorBoard
    RUN/eval.json          final dev/test metrics (eval-<file>.json: ``attnkit evaluate``)
    RUN/report.html        the run report
    RUN/model.onnx         the model as an ONNX graph (``attnkit export``; ``model.int8.onnx``: ``attnkit compress``)
    RUN/engine.json        which engine and graph file predict with by default, the export's parity check
    RUN/out_of_scope.json  the out-of-scope confidence threshold tuned on dev (``attnkit tune-oos``)

This module sits at the bottom of the package so that the trainer (which writes checkpoints
and the metrics log) and :mod:`attnkit.rundir` (which opens, checks and loads a run) use the
same names; nothing else spells them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .files import TMP_SUFFIX

CONFIG = "config.yaml"
META = "meta.json"
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
EVENTS = "events"
EVAL = "eval.json"
EVAL_OF = "eval-"  # eval-<data file name>.json: attnkit evaluate RUN --data FILE
REPORT = "report.html"
TOKENIZER = "tokenizer"
BACKBONE = "backbone"
GRAPH = "model.onnx"
GRAPH_INT8 = "model.int8.onnx"
ENGINE = "engine.json"
OUT_OF_SCOPE = "out_of_scope.json"


def _at(*parts: str) -> property:
    """A path below the run directory, as a read-only attribute."""
    return property(lambda self: self.root.joinpath(*parts), doc="RUN/" + "/".join(parts))


@dataclass(frozen=True)
class RunFiles:
    """Paths of one run directory's files."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = _at(CONFIG)
    meta = _at(META)
    weights = _at(WEIGHTS)
    checkpoints = _at(CHECKPOINTS)
    last_checkpoint = _at(CHECKPOINTS, LAST)  # what --resume continues from
    best_checkpoint = _at(CHECKPOINTS, BEST)  # the best epoch by the dev metric
    metrics = _at(METRICS)
    events = _at(EVENTS)  # TensorBoard
    eval = _at(EVAL)
    report = _at(REPORT)
    tokenizer = _at(TOKENIZER)  # fine-tuned runs
    backbone = _at(BACKBONE)  # fine-tuned runs
    engine = _at(ENGINE)  # exported or compressed runs
    out_of_scope = _at(OUT_OF_SCOPE)  # attnkit tune-oos

    def epoch_checkpoint(self, epoch: int) -> Path:
        """``checkpoints/epoch-N.pt``: the weights after epoch N (kept for ``train.average_last``)."""
        return self.root / CHECKPOINTS / f"epoch-{epoch}.pt"

    def part(self, name: str) -> Path:
        """``tasks/NAME``: one task of a multi-task run, as a complete run directory of its own."""
        return self.root / "tasks" / name

    def eval_of(self, data_file: str | Path) -> Path:
        """``eval-<file name>.json``: ``attnkit evaluate RUN --data FILE``."""
        name = "".join("_" if ch in '*?[]<>:"|\\' else ch for ch in Path(data_file).name)  # a glob, Windows-safe
        return self.root / f"{EVAL_OF}{name}.json"

    def read_metrics(self) -> list[dict]:
        """The records of ``metrics.jsonl`` in order; a line cut short by a kill (or damaged) is skipped."""
        if not self.metrics.is_file():
            return []
        out = []
        for line in self.metrics.read_bytes().splitlines():
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):  # a line cut short by a kill, or damage
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def leftovers(self) -> list[Path]:
        """Temporary files of atomic writes that a kill interrupted (never a finished file)."""
        found = []
        for folder in (self.root, self.checkpoints):
            if folder.is_dir():
                found += [p for p in folder.iterdir() if p.is_file() and p.name.startswith(".")
                          and p.name.endswith(TMP_SUFFIX)]
        return sorted(found)

    def clean_leftovers(self) -> list[Path]:
        """Delete :meth:`leftovers`; returns what was deleted."""
        gone = self.leftovers()
        for p in gone:
            p.unlink(missing_ok=True)
        return gone
