"""Houlsby bottleneck adapters (Houlsby et al., "Parameter-Efficient Transfer Learning for
NLP", ICML 2019): ``h + up(gelu(down(h)))`` after a sub-layer's output projection, before
its residual connection and LayerNorm. ``up`` starts at zero, so a fresh adapter is the
identity and the model starts exactly where the pretrained one is."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class Adapter(nn.Module):
    """``x + up(gelu(down(x)))`` with a ``size``-wide bottleneck."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.up = nn.Linear(size, dim)
        nn.init.normal_(self.down.weight, std=1e-3)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck."""
        return x + self.up(F.gelu(self.down(x)))


class WithAdapter(nn.Module):
    """A projection followed by an adapter; ``weight``/``bias`` stay reachable so code that
    reads the projection's parameters keeps working."""

    def __init__(self, proj: nn.Linear, size: int):
        super().__init__()
        self.proj = proj
        self.adapter = Adapter(proj.out_features, size)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped projection's weight."""
        return self.proj.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The wrapped projection's bias."""
        return self.proj.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project, then adapt."""
        return self.adapter(self.proj(x))


def add_adapters(model: nn.Module, size: int) -> list[str]:
    """Insert trainable adapters after ``attention.output.dense`` and ``output.dense`` of every
    layer of a BERT-structured encoder; returns the wrapped module names."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError("model.finetune.method: adapter needs a BERT-structured backbone (encoder.layer[i] with "
                          "attention.output.dense and output.dense); use lora or ia3 for this model")
    wrapped = []
    for i, layer in enumerate(layers):
        for owner, name in ((layer.attention.output, f"encoder.layer.{i}.attention.output.dense"),
                            (layer.output, f"encoder.layer.{i}.output.dense")):
            if not isinstance(owner.dense, nn.Linear):
                raise ConfigError(f"model.finetune.method: adapter: {name} is not a Linear layer")
            owner.dense = WithAdapter(owner.dense, size)
            wrapped.append(name)
    return wrapped
