"""The run directory: the contract between training and everything downstream.

    RUN/config.yaml        the resolved config (every default filled in)
    RUN/meta.json          task, sizes, label names, normalisation stats, versions
    RUN/vocab.json ...     vocabularies built from the training split
    RUN/tokenizer/         a pretrained backbone's tokenizer (fine-tuned runs)
    RUN/backbone/          the backbone's config (fine-tuned runs)
    RUN/model.safetensors  the best weights (by the dev metric); for a fine-tuned run only
                           the parameters that trained (meta.json "weights": "trained"):
                           the frozen rest is reloaded from model.pretrained
    RUN/checkpoints/       last.pt (resume) and best.pt
    RUN/metrics.jsonl      one record per logged step/epoch; RUN/events/ for TensorBoard
    RUN/eval.json          final dev/test metrics
    RUN/report.html        the run report (``attnkit report``; written after training)

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
from ..models import build_model, count_parameters
from .config import RunConfig

VOCAB_TYPES = {"vocab.json": Vocab, "chars.json": CharVocab, "labels.json": LabelVocab}


class RunError(AttnkitError):
    """A run directory is missing or incomplete."""


def saves_everything(model: torch.nn.Module) -> bool:
    """Whether the model's saved weights are all of its state (else only what trained)."""
    trained = getattr(model, "trained_state", None)
    return trained is None or set(trained()) == set(model.state_dict())


def save_weights(model: torch.nn.Module, path: Path, everything: bool = False) -> None:
    """The model's weights as safetensors, atomically: what trained (``trained_state``) or
    the whole state dict."""
    from safetensors.torch import save

    state = model.state_dict() if everything else getattr(model, "trained_state", model.state_dict)()
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    atomic_write(path, lambda f: f.write(save(tensors)))


def write_meta(run_dir: Path, cfg: RunConfig, prepared, model: torch.nn.Module, everything: bool = False) -> None:
    """meta.json, the vocabularies (and a backbone's tokenizer and config)."""
    for name, vocab in prepared.vocabs.items():
        vocab.save(run_dir / name)
    trainable, total = count_parameters(model)
    meta = {"attnkit": __version__, "torch": torch.__version__, "task": cfg.task, "sizes": prepared.sizes,
            "labels": prepared.label_names, "stats": prepared.stats,
            "parameters": {"trainable": trainable, "total": total},
            "weights": "all" if everything or saves_everything(model) else "trained"}
    encoder = getattr(model, "encoder", None)
    if cfg.model.pretrained is not None and hasattr(encoder, "base"):
        encoder.base.config.save_pretrained(str(run_dir / "backbone"))
    write_json(run_dir / "meta.json", meta)


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
    extra = {}
    if cfg.model.pretrained is not None:
        vocabs["tokenizer"], extra["backbone"] = _run_backbone(run_dir, cfg, meta)
    model = build_model(cfg.task, cfg.model, **meta["sizes"], **extra)
    from safetensors.torch import load_file

    where = run_dir / "model.safetensors"
    try:
        state = load_file(str(where))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for damaged files)
        raise RunError(f"{where}: cannot be read ({e})") from None
    if meta.get("weights") == "trained":  # the frozen rest came from model.pretrained
        try:
            model.load_trained_state(state, where=str(where))
        except ValueError as e:
            raise RunError(str(e)) from None
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RunError(f"{where}: weights do not match the config's model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return LoadedRun(run_dir, cfg, meta, vocabs, model)


def _run_backbone(run_dir: Path, cfg: RunConfig, meta: dict):
    """A fine-tuned run's tokenizer (saved with it) and backbone: built from the saved config
    when the run saved every weight, else loaded from ``model.pretrained``."""
    from ..models.pretrained import import_transformers, load_backbone

    transformers = import_transformers()
    tok_dir, cfg_dir = run_dir / "tokenizer", run_dir / "backbone"
    if not tok_dir.is_dir() or not cfg_dir.is_dir():
        raise RunError(f"{run_dir}: a fine-tuned run needs tokenizer/ and backbone/ (written by attnkit train)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    if meta.get("weights") == "trained":
        return tokenizer, load_backbone(cfg.model.pretrained)[0]
    config = transformers.AutoConfig.from_pretrained(str(cfg_dir), local_files_only=True)
    return tokenizer, transformers.AutoModel.from_config(config)
