"""Checkpoints that survive a kill at any moment: written to a temporary file in the same
folder, flushed to disk, then renamed over the old one (``os.replace`` is atomic), so a
reader sees either the previous checkpoint or the new one, never half of one."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..errors import AttnkitError
from ..files import atomic_write


class CheckpointError(AttnkitError):
    """A checkpoint is missing or unreadable."""


def rng_state() -> dict:
    """Every random generator the training loop draws from."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomically save a training state dict (model, optimiser, scheduler, counters, RNG)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; one clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({e})") from None


def average_weights(paths: list[Path]) -> dict:
    """The element-wise mean of the ``model`` weights of several checkpoints (floating-point
    tensors; others, such as step counters, are taken from the last)."""
    states = [load_checkpoint(p)["model"] for p in paths]
    if not states:
        raise CheckpointError("no checkpoints to average")
    out = {}
    for k, last in states[-1].items():
        if torch.is_floating_point(last):
            out[k] = sum(s[k].double() for s in states).div(len(states)).to(last.dtype)
        else:
            out[k] = last
    return out
