"""The run directory: the contract between training and everything downstream.

    RUN/config.yaml        the resolved config (every default filled in)
    RUN/meta.json          task, sizes, label names, normalisation stats, versions
    RUN/vocab.json ...     vocabularies built from the training split
    RUN/model.safetensors  the best weights (by the dev metric)
    RUN/checkpoints/       last.pt (resume) and best.pt
    RUN/metrics.jsonl      one record per logged step/epoch; RUN/events/ for TensorBoard
    RUN/eval.json          final dev/test metrics

Copy it anywhere and ``attnkit predict RUN ...`` works there."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..config import from_dict, load_yaml
from ..data import CharVocab, LabelVocab, Vocab
from ..errors import AttnkitError
from ..files import atomic_write, write_json
from ..models import build_model
from .config import RunConfig

VOCAB_TYPES = {"vocab.json": Vocab, "chars.json": CharVocab, "labels.json": LabelVocab}


class RunError(AttnkitError):
    """A run directory is missing or incomplete."""


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda f: f.write(save(tensors)))


def write_meta(run_dir: Path, cfg: RunConfig, prepared) -> None:
    """meta.json and the vocabularies."""
    for name, vocab in prepared.vocabs.items():
        vocab.save(run_dir / name)
    write_json(run_dir / "meta.json", {"attnkit": __version__, "torch": torch.__version__, "task": cfg.task,
                                       "sizes": prepared.sizes, "labels": prepared.label_names,
                                       "stats": prepared.stats})


@dataclass
class LoadedRun:
    """A trained run, ready to predict."""

    path: Path
    cfg: RunConfig
    meta: dict
    vocabs: dict
    model: torch.nn.Module


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the model of a run directory and load its best weights."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "meta.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            hint = " (is training finished? `attnkit train ... --resume` continues it)" if name == "model.safetensors" else ""
            raise RunError(f"{run_dir}: not a complete run directory: {name} is missing{hint}")
    cfg = from_dict(RunConfig, load_yaml(run_dir / "config.yaml"))
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    vocabs = {name: cls.load(run_dir / name) for name, cls in VOCAB_TYPES.items() if (run_dir / name).is_file()}
    model = build_model(cfg.task, cfg.model, **meta["sizes"])
    from safetensors.torch import load_file

    state = load_file(str(run_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RunError(f"{run_dir / 'model.safetensors'}: weights do not match the config's model "
                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return LoadedRun(run_dir, cfg, meta, vocabs, model)
