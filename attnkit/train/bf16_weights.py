"""Weights held in bf16 while a model runs under bf16 autocast, instead of cast on every call.

Autocast casts an fp32 weight to bf16 each time an op reads it; it keeps the cast for the
context's life only for weights that train. A frozen backbone under LoRA, and every weight
at prediction time, is therefore cast again on every forward: measured on a 2-core Xeon with
AMX, 4 ms of a 58 ms MiniLM LoRA step (10.8M frozen weights). Here the copies are made once
and swapped in (``param.data``, no copy) for the duration of a call.

Which weights may be swapped is the module's to say: a module that passes a weight only to
ops autocast runs in bf16 (``nn.Linear``'s forward), never reading it otherwise, lists it in
a ``bf16_safe_weights()`` method. (A module that reads a weight itself, such as a fused
attention score reading its projection's ``.weight``, would see bf16 where it expects what
autocast hands it, so nothing is swapped without that declaration.) Under autocast the
results are bit-identical: autocast's own cast is the same ``.to(torch.bfloat16)``.

The copies are remade when a weight changes (its storage or its in-place version counter),
and the swap is counted, so nested or concurrent calls under bf16 share one swap and the
last one out restores the fp32 tensors."""
from __future__ import annotations

import contextlib
import threading
import weakref

import torch

_HELD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {frozen_only: Bf16Weights}


def declared_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The fp32 parameters ``model``'s modules declare safe to hold in bf16, each once."""
    seen, out = set(), []
    for module in model.modules():
        declare = getattr(module, "bf16_safe_weights", None)
        if declare is None:
            continue
        for p in declare():
            if id(p) in seen or p.dtype != torch.float32:
                continue
            seen.add(id(p))
            out.append(p)
    return out


class Bf16Weights:
    """bf16 copies of ``params``, swapped in by :meth:`swapped` (with ``frozen_only``, only
    those that do not train at the time of the call)."""

    def __init__(self, params: list[torch.nn.Parameter], frozen_only: bool):
        self.params, self.frozen_only = params, frozen_only
        self.live: list[torch.nn.Parameter] = []
        self.copies: list[torch.Tensor] = []
        self.full: list[torch.Tensor] = []
        self.stamp: list[tuple[int, int, int]] = []
        self.depth = 0
        self.lock = threading.Lock()

    def _swap_in(self) -> None:
        live = [p for p in self.params if not (self.frozen_only and p.requires_grad)]
        stamp = [(id(p), p.data_ptr(), p._version) for p in live]
        if stamp != self.stamp:  # first use, or a weight changed since the copies were made
            self.live, self.copies, self.stamp = live, [p.detach().to(torch.bfloat16) for p in live], stamp
        self.full = [p.data for p in self.live]
        for p, low in zip(self.live, self.copies):
            p.data = low

    @contextlib.contextmanager
    def swapped(self):
        """The parameters hold their bf16 copies inside the block, their own tensors after it."""
        if not self.params:
            yield
            return
        with self.lock:
            if self.depth == 0:
                self._swap_in()
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    for p, full in zip(self.live, self.full):
                        p.data = full
                    self.full = []


def bf16_weights(model: torch.nn.Module | None, frozen_only: bool = False):
    """A context holding ``model``'s declared weights (with ``frozen_only``, those that do not
    train) in bf16; the copies are kept with the model for later calls."""
    if model is None:
        return contextlib.nullcontext()
    held = _HELD.setdefault(model, {})
    if frozen_only not in held:
        held[frozen_only] = Bf16Weights(declared_weights(model), frozen_only)
    return held[frozen_only].swapped()
