"""``model.init_from: RUN``: a classifier or tagger from blocks starts from the embedding and
encoder of a pretrained run (a ``masked_lm`` run) and reads text with that run's tokenizer.

The run's ``model.embedding`` and ``model.encoder`` options are the starting point of the new
config's (keys written in the new config win: dropout may change, sizes may not), so the
blocks are built with the pretrained shapes and the weights load one to one."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ConfigError
from ..nn.transformer import position_limit
from ..run_files import RunFiles
from ..rundir import RunError, open_run

log = logging.getLogger("attnkit")
BLOCKS = ("embedding", "encoder")  # what is copied: the head (and a pooler) start fresh


def _pretrained_run(path: str):
    """``(config, files)`` of the ``model.init_from`` run, checked."""
    try:
        cfg, _, _ = open_run(path)
    except RunError as e:
        raise ConfigError(f"model.init_from: {e}") from None
    files = RunFiles(Path(path))
    if cfg.model.pretrained is not None or not files.tokenizer.is_dir():
        raise ConfigError(f"model.init_from: {path} is a {cfg.task} run without its own tokenizer/; give a "
                          f"masked_lm run (task: masked_lm), which trains its encoder and tokenizer")
    return cfg, files


def merge_pretrained_blocks(raw: dict) -> dict:
    """A raw run config with ``model.init_from`` given: its ``model.embedding`` and
    ``model.encoder`` laid over the pretrained run's (unchanged without ``init_from``)."""
    model = raw.get("model")
    if not isinstance(model, dict) or not model.get("init_from"):
        return raw
    if model.get("pretrained") is not None:
        raise ConfigError("model.init_from: starts a model from blocks; it cannot be combined with model.pretrained")
    pre, _ = _pretrained_run(str(model["init_from"]))
    for key in BLOCKS:
        mine = model.get(key) or {}
        if not isinstance(mine, dict):
            raise ConfigError(f"model.{key}: expected a mapping like {{type: ...}}, got {mine!r}")
        model[key] = {**getattr(pre.model, key), **mine}
    enc, finetune = model["encoder"], model.get("finetune") or {}
    positions = position_limit(enc)
    if not isinstance(finetune, dict) or not isinstance(positions, int):  # bad types: the config check names them
        return raw
    if "max_len" not in finetune:  # word pieces read per text: as many as the encoder has positions, up to 128
        model["finetune"] = {**finetune, "max_len": min(128, positions)}
    elif isinstance(finetune["max_len"], int) and finetune["max_len"] > positions:
        raise ConfigError(f"model.finetune.max_len: {finetune['max_len']} word pieces, more than the pretrained "
                          f"encoder's max_len = {positions} positions; lower it")
    return raw


def load_pretrained_blocks(model: torch.nn.Module, path: str) -> None:
    """Copy the pretrained run's embedding and encoder weights into ``model`` (same shapes)."""
    from safetensors.torch import load_file

    _, files = _pretrained_run(path)
    state = load_file(str(files.weights))
    copied = 0
    for block in BLOCKS:
        mine = getattr(model, block, None)
        part = {k[len(block) + 1:]: v for k, v in state.items() if k.startswith(block + ".")}
        if mine is None or not part:
            raise ConfigError(f"model.init_from: {path} has no {block} weights this model can take")
        try:
            mine.load_state_dict(part)
        except RuntimeError as e:
            first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln or "Missing" in ln
                          or "Unexpected" in ln), str(e)[:200])
            raise ConfigError(f"model.{block}: does not fit the weights of {path} ({first}); keep the pretrained "
                              f"run's sizes (model.{block} may change dropout, not dimensions)") from None
        copied += sum(v.numel() for v in part.values())
    log.info(f"model.init_from: {copied:,} weights of the embedding and encoder from {path}")
