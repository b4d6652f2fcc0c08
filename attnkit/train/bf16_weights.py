"""Weights held in bf16 while a model runs under bf16 autocast, instead of cast on every call.

Autocast casts an fp32 weight to bf16 each time an op reads it; it keeps the cast for the
context's life only for weights that train. A frozen backbone under LoRA, and every weight
at prediction time, is therefore cast again on every forward: measured on a 2-core Xeon with
AMX, 4 ms of a 55 ms MiniLM LoRA step (10.8M frozen weights). Here the copies are made once
and swapped in (``param.data``, no copy) for the duration of a call.

Which weights may be swapped is the module's to say: a module that passes a weight only to
ops autocast runs in bf16 (``nn.Linear``'s forward), never reading it otherwise, lists it in
a ``bf16_safe_weights()`` method. (A module that reads a weight itself, such as a fused
attention score reading its projection's ``.weight``, would see bf16 where it expects what
autocast hands it, so nothing is swapped without that declaration.) Under autocast the
results are bit-identical: autocast's own cast is the same ``.to(torch.bfloat16)``.

The copies are remade when a weight changes (its storage or its in-place version counter; a
write through ``.data`` shows in neither: call :func:`forget_bf16_copies` after one, as the
LoRA merge does; modules replaced by new ones, as pruning does, need nothing). Swaps are
counted, so nested or concurrent calls under bf16 share one and the last one out restores
the fp32 tensors. While a swap is on, the declared
weights are bf16 for every thread: running the same model object in fp32 from another
thread at that moment is not supported (it fails on the dtype). The copies live as long as
the model (weakly keyed), one set per mode (training steps, prediction)."""
from __future__ import annotations

import contextlib
import threading
import weakref

import torch

_HELD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {frozen_only: Bf16Weights}
_LOCK = threading.RLock()  # one for every swap: a model's two modes (training, prediction) can meet
_REGISTRATIONS = [0]  # modules and parameters registered anywhere so far: a changed model shows here


def _registered(*_args) -> None:
    _REGISTRATIONS[0] += 1


# walking a model for its declared weights costs ~0.6 ms (MiniLM under PEFT): done again only
# after a module or parameter was registered somewhere (a merge, a prune, a new model)
torch.nn.modules.module.register_module_module_registration_hook(_registered)
torch.nn.modules.module.register_module_parameter_registration_hook(_registered)


def declared_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters ``model``'s modules declare safe to hold in bf16, each once."""
    seen, out = set(), []
    for module in model.modules():
        declare = getattr(module, "bf16_safe_weights", None)
        if declare is None:
            continue
        for p in declare():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class Bf16Weights:
    """bf16 copies of ``model``'s declared weights, swapped in by :meth:`swapped` (with
    ``frozen_only``, only those that do not train at the time of the call). The declared list
    is read again when modules or parameters were registered since (a merge, a prune)."""

    def __init__(self, model: torch.nn.Module, frozen_only: bool):
        self.model, self.frozen_only = weakref.ref(model), frozen_only
        self.cache: dict[int, tuple[tuple[int, int], torch.Tensor]] = {}  # id(param) -> (stamp, bf16 copy)
        self.held: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (param, its fp32 tensor) while swapped
        self.depth = 0
        self.declared: tuple[int, list[torch.nn.Parameter]] = (-1, [])  # (registrations then, the weights)

    def _swap_in(self) -> None:
        model = self.model()
        if model is None:
            return
        if self.declared[0] != _REGISTRATIONS[0]:
            self.declared = (_REGISTRATIONS[0], declared_weights(model))
        cache = {}
        for p in self.declared[1]:
            # a weight already in bf16 is held by the model's other swap (training vs prediction)
            if p.dtype != torch.float32 or (self.frozen_only and p.requires_grad):
                continue
            stamp = (p.data_ptr(), p._version)
            old = self.cache.get(id(p))
            if old is None or old[0] != stamp:
                old = (stamp, p.detach().to(torch.bfloat16))
            cache[id(p)] = old
            self.held.append((p, p.data))
            p.data = old[1]
        self.cache = cache  # weights no longer declared are let go

    def _swap_out(self) -> None:
        for p, full in self.held:
            p.data = full
        self.held = []

    @contextlib.contextmanager
    def swapped(self):
        """The parameters hold their bf16 copies inside the block, their own tensors after it."""
        with _LOCK:
            if self.depth == 0:
                self._swap_in()
            self.depth += 1
        try:
            yield
        finally:
            with _LOCK:
                self.depth -= 1
                if self.depth == 0:
                    self._swap_out()


def bf16_weights(model: torch.nn.Module | None, frozen_only: bool = False):
    """A context holding ``model``'s declared weights (with ``frozen_only``, those that do not
    train) in bf16; the copies are kept with the model for later calls."""
    if model is None:
        return contextlib.nullcontext()
    with _LOCK:
        held = _HELD.setdefault(model, {})
        if frozen_only not in held:
            held[frozen_only] = Bf16Weights(model, frozen_only)
        return held[frozen_only].swapped()


def forget_bf16_copies(model: torch.nn.Module) -> None:
    """Drop ``model``'s bf16 copies: for code that changes weights through ``.data`` (PEFT's
    merge), which neither their storage nor their version counter shows."""
    with _LOCK:
        _HELD.pop(model, None)
