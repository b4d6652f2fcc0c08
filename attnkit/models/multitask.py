"""Several task models sharing one embedding and encoder: each task keeps its own pooler and
head (and a tagger its character features); the shared blocks are the same modules in every
task model, so a task model alone is a complete single-task model (what a multi-task run
writes per task)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .classifiers import TaskModel

SHARED = ("embedding", "encoder")


def _examples(batch: dict) -> int:
    """How many examples a task batch holds (its first tensor's first dimension)."""
    return next(v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor) and v.dim())


class MultiTaskModel(TaskModel):
    """``{"parts": [(task name, batch), ...]} -> {"parts": [(task name, that model's output)]}``;
    the loss is the example-weighted mean of the parts' losses."""

    target = "parts"

    def __init__(self, models: dict[str, nn.Module], tasks: dict[str, str]):
        super().__init__()
        self.tasks = dict(tasks)  # name -> its task's registered name
        names = list(models)
        first = models[names[0]]
        for name in names[1:]:  # one embedding and encoder, the first task's, in every task model
            for block in SHARED:
                if hasattr(first, block) != hasattr(models[name], block):
                    raise ConfigError(f"multitask.tasks.{name}: its model has no {block} to share with "
                                      f"{names[0]}'s")
                if hasattr(first, block):
                    setattr(models[name], block, getattr(first, block))
        if not hasattr(first, "encoder"):
            raise ConfigError(f"multitask.tasks.{names[0]}: its model has no encoder to share")
        self.models = nn.ModuleDict(models)

    @property
    def embedding(self):
        """The shared embedding (``model.init_from`` loads into it; None without one)."""
        return getattr(self.models[next(iter(self.models))], "embedding", None)

    @property
    def encoder(self):
        """The shared encoder."""
        return self.models[next(iter(self.models))].encoder

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Each part through its task's model."""
        return {"parts": [(name, self.models[name](b, need_weights=need_weights)) for name, b in batch["parts"]]}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        """Mean over examples of every part's loss."""
        total, count = 0.0, 0
        for (name, o), (_, b) in zip(out["parts"], batch["parts"]):
            n = _examples(b)
            total = total + self.models[name].loss(o, b) * n
            count += n
        return total / max(count, 1)

    def embedding_layer(self):
        """The shared token embedding."""
        return self.models[next(iter(self.models))].embedding_layer()
