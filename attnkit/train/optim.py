"""Optimisers and learning-rate schedules, by name.

Adam and AdamW use PyTorch's fused implementation where every parameter allows it (floating
point, on the CPU or a CUDA device): one pass over each parameter per step, where the multi-tensor
(``foreach``) one makes several. On MiniLM's 10.6M encoder parameters one AdamW step took
17-34 ms fused and 77-94 ms ``foreach`` (2-core AMD EPYC, 2026-12-02), several times what the
fine-tuning step itself saves elsewhere; SGD and anything else stays ``foreach``. A run resumed
from a checkpoint written before 2026-12-02 keeps the ``foreach`` kind its optimiser state
records (PyTorch restores it with the state). Schedules are multipliers of the base
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
    """``train.schedule``: constant, linear or cosine decay, or ``inverse_sqrt`` (the
    Transformer's ``sqrt(warmup / step)``), after linear warm-up over ``warmup`` (a fraction
    of all steps if < 1, else a number of steps)."""

    name: str = "constant"
    warmup: float = checked(0.0, non_negative)
    min_lr_ratio: float = checked(0.0, unit_interval)

    def validate(self, where: str = "train.schedule"):
        """Check the name."""
        SCHEDULES.get(self.name, where=f"{where}.name")


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    # biases, norms and 1-d parameters take no weight decay (the usual AdamW practice)
    return p.dim() <= 1 or name.endswith(".bias")


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float | None = None) -> list[dict]:
    """Trainable parameters split into decayed and non-decayed groups; a model with
    ``lr_scale(name) -> float`` (layer-wise decay) gets one group per distinct scale, each
    with ``lr * scale``."""
    scale_of = getattr(model, "lr_scale", None)
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = float(scale_of(name)) if scale_of is not None else 1.0
            groups.setdefault((_no_decay(name, p), scale), []).append(p)
    out = []
    for (no_decay, scale), params in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        group = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if scale != 1.0 and lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def _sgd(groups, c: OptimizerConfig):
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, foreach=True)


def _lazy_sparse_step(opt: torch.optim.Optimizer, decoupled: bool) -> None:
    """Update the parameters whose gradient is sparse (an embedding with ``sparse=True``)
    lazily: only the rows the batch used move, and only their moments decay (LazyAdam, as
    ``torch.optim.SparseAdam`` but with weight decay and in the same optimiser and state
    format as the dense parameters). Their ``.grad`` is then cleared (as ``zero_grad``
    would) so the dense step skips them."""
    for group in opt.param_groups:
        b1, b2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            g = p.grad
            if g is None or not g.is_sparse:
                continue
            g = g.coalesce()
            rows, values = g.indices()[0], g.values()
            state = opt.state[p]
            if not state:  # a float32 step on the parameter's device, as the fused kernels keep it
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            step = float(state["step"])
            with torch.no_grad():
                if wd and not decoupled:
                    values = values + wd * p[rows]
                m = state["exp_avg"][rows].mul_(b1).add_(values, alpha=1 - b1)
                v = state["exp_avg_sq"][rows].mul_(b2).addcmul_(values, values, value=1 - b2)
                state["exp_avg"][rows] = m
                state["exp_avg_sq"][rows] = v
                update = (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt_().add_(eps))
                w = p[rows]
                if wd and decoupled:
                    w.mul_(1 - lr * wd)
                p[rows] = w.sub_(update, alpha=lr)
            p.grad = None


class LazySparseMixin:
    """Lets a fused or multi-tensor Adam/AdamW also take sparse gradients, updated lazily."""

    decoupled = False

    def step(self, closure=None):
        """One optimiser step: sparse parameters lazily, then the dense ones. After a fused
        step the updated parameters' version counters are moved on: PyTorch's fused kernels
        write in place without doing so (torch 2.13), and caches that follow the weights by
        version (the fused RNN kernel's packed weights, per-token input projections) would
        otherwise read the weights of the first step for the whole run (a dev evaluation of
        small batches during training scored a model that never changed)."""
        _lazy_sparse_step(self, self.decoupled)
        fused = any(g.get("fused") for g in self.param_groups)
        stepped = [p for g in self.param_groups for p in g["params"] if p.grad is not None] if fused else []
        out = super().step(closure)
        if stepped:
            torch.autograd.graph.increment_version(stepped)
        return out


class Adam(LazySparseMixin, torch.optim.Adam):
    """``torch.optim.Adam`` (fused or multi-tensor) that also takes sparse gradients, lazily."""


class AdamW(LazySparseMixin, torch.optim.AdamW):
    """``torch.optim.AdamW`` (fused or multi-tensor) that also takes sparse gradients, lazily."""

    decoupled = True


def fastest_kind(groups) -> dict:
    """``{"fused": True}`` when every parameter is floating point on the CPU or a GPU (what
    PyTorch's fused Adam/AdamW takes), else ``{"foreach": True}``."""
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    ok = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if ok and params else {"foreach": True}


def _adam(groups, c: OptimizerConfig):
    return Adam(groups, lr=c.lr, betas=tuple(c.betas), **fastest_kind(groups))


def _adamw(groups, c: OptimizerConfig):
    return AdamW(groups, lr=c.lr, betas=tuple(c.betas), **fastest_kind(groups))


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most ``max_norm`` (dense and sparse
    gradients; ``torch.nn.utils.clip_grad_norm_`` takes dense ones only)."""
    dense, sparse = [], []
    for p in params:
        if p.grad is not None:
            (sparse if p.grad.is_sparse else dense).append(p)
    if not sparse:
        return torch.nn.utils.clip_grad_norm_(dense, max_norm)
    for p in sparse:
        p.grad = p.grad.coalesce()
    norms = [torch.linalg.vector_norm(p.grad.values()) for p in sparse]
    if dense:
        norms += list(torch._foreach_norm([p.grad for p in dense]))
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    if dense:
        torch._foreach_mul_([p.grad for p in dense], scale)
    for p in sparse:
        p.grad.values().mul_(scale)
    return total


def build_optimizer(model: torch.nn.Module, c: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the model's trainable parameters."""
    groups = param_groups(model, c.weight_decay, c.lr)
    if not groups:
        raise ConfigError("train.optimizer: the model has no trainable parameters")
    return OPTIMIZERS.get(c.name, where="train.optimizer.name")(groups, c)


def _constant(progress: float, c: ScheduleConfig, step: int, warmup: int) -> float:
    return 1.0


def _linear(progress: float, c: ScheduleConfig, step: int, warmup: int) -> float:
    return c.min_lr_ratio + (1 - c.min_lr_ratio) * (1 - progress)


def _cosine(progress: float, c: ScheduleConfig, step: int, warmup: int) -> float:
    return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _inverse_sqrt(progress: float, c: ScheduleConfig, step: int, warmup: int) -> float:
    # 1 where warm-up ends (step warmup - 1), then 1 / sqrt of the steps taken, scaled to it
    return math.sqrt(max(warmup, 1) / (step + 1))


# Registered by call rather than by decorator: mutation testing (mutmut) skips decorated functions.
for _name, _make in (("sgd", _sgd), ("adam", _adam), ("adamw", _adamw)):
    OPTIMIZERS.register(_name)(_make)
for _name, _shape in (("constant", _constant), ("linear", _linear), ("cosine", _cosine),
                      ("inverse_sqrt", _inverse_sqrt)):
    SCHEDULES.register(_name)(_shape)


def lr_multiplier(step: int, total: int, c: ScheduleConfig) -> float:
    """Learning-rate factor at optimiser step ``step`` of ``total``."""
    warmup = int(c.warmup * total) if c.warmup < 1 else int(c.warmup)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return SCHEDULES.get(c.name)(min(1.0, progress), c, step, warmup)


def build_schedule(opt: torch.optim.Optimizer, total_steps: int, c: ScheduleConfig):
    """A ``LambdaLR`` following :func:`lr_multiplier`."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_multiplier(step, total_steps, c))
