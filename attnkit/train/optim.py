"""Optimisers and learning-rate schedules, by name.

Optimisers use PyTorch's multi-tensor (``foreach``) implementations: one kernel per step for
all parameters instead of a Python loop over them. Schedules are multipliers of the base
learning rate with linear warm-up, as ``LambdaLR``s so they checkpoint like any scheduler."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..config import checked, non_negative, positive, unit_interval
from ..errors import ConfigError
from ..registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@dataclass
class OptimizerConfig:
    """``train.optimizer``: name (sgd, adam, adamw) and its settings."""

    name: str = "adam"
    lr: float = checked(1e-3, positive)
    weight_decay: float = checked(0.0, non_negative)
    momentum: float = checked(0.0, unit_interval)  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw

    def validate(self, where: str = "train.optimizer"):
        """Check the name and the settings that depend on it."""
        OPTIMIZERS.get(self.name, where=f"{where}.name")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError(f"{where}.nesterov: needs name: sgd and momentum > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{where}.betas: expected two numbers in [0, 1), got {self.betas}")


@dataclass
class ScheduleConfig:
    """``train.schedule``: constant, linear or cosine decay after linear warm-up over
    ``warmup`` (a fraction of all steps if < 1, else a number of steps)."""

    name: str = "constant"
    warmup: float = checked(0.0, non_negative)
    min_lr_ratio: float = checked(0.0, unit_interval)

    def validate(self, where: str = "train.schedule"):
        """Check the name."""
        SCHEDULES.get(self.name, where=f"{where}.name")


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    # biases, norms and 1-d parameters take no weight decay (the usual AdamW practice)
    return p.dim() <= 1 or name.endswith(".bias")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed and non-decayed groups."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (rest if _no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


@OPTIMIZERS.register("sgd")
def _sgd(groups, c: OptimizerConfig):
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, foreach=True)


@OPTIMIZERS.register("adam")
def _adam(groups, c: OptimizerConfig):
    return torch.optim.Adam(groups, lr=c.lr, betas=tuple(c.betas), foreach=True)


@OPTIMIZERS.register("adamw")
def _adamw(groups, c: OptimizerConfig):
    return torch.optim.AdamW(groups, lr=c.lr, betas=tuple(c.betas), foreach=True)


def build_optimizer(model: torch.nn.Module, c: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the model's trainable parameters."""
    groups = param_groups(model, c.weight_decay)
    if not groups:
        raise ConfigError("train.optimizer: the model has no trainable parameters")
    return OPTIMIZERS.get(c.name, where="train.optimizer.name")(groups, c)


@SCHEDULES.register("constant")
def _constant(progress: float, c: ScheduleConfig) -> float:
    return 1.0


@SCHEDULES.register("linear")
def _linear(progress: float, c: ScheduleConfig) -> float:
    return c.min_lr_ratio + (1 - c.min_lr_ratio) * (1 - progress)


@SCHEDULES.register("cosine")
def _cosine(progress: float, c: ScheduleConfig) -> float:
    return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_multiplier(step: int, total: int, c: ScheduleConfig) -> float:
    """Learning-rate factor at optimiser step ``step`` of ``total``."""
    warmup = int(c.warmup * total) if c.warmup < 1 else int(c.warmup)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return SCHEDULES.get(c.name)(min(1.0, progress), c)


def build_schedule(opt: torch.optim.Optimizer, total_steps: int, c: ScheduleConfig):
    """A ``LambdaLR`` following :func:`lr_multiplier`."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_multiplier(step, total_steps, c))
