"""Choosing a backend: fastest correct first, per device, with the reason recorded.

Order (each backend's ``why_not_automatic`` decides whether it is picked for the call: its
``why_not``, plus ``direct``'s rule of no gradients):

* CPU: ``sdpa`` (unmasked dot product: one fused call) -> ``blocksparse`` (masked or
  biased dot product: fused kernel on visible tiles only) -> ``direct`` (small calls without
  gradients: all scores at once) -> ``chunked`` (anything).
* CUDA: ``sdpa`` -> ``flex`` (compiled FlexAttention, any mask/modifier) -> ``direct`` -> ``chunked``.

``flex`` is never picked automatically on CPU: there it runs forward only, compiles for
every new shape (2-8 s measured), and was slower than SDPA on the dense and ALiBi rows of
``benchmarks/results/attention.json``; it was faster in forward on block-sparse masks
(sliding window) once compiled, so inference with fixed shapes may force it.
``reference`` (the float64 oracle) runs only when forced, or while a graph is exported
(``torch.jit`` tracing, ONNX export): the plain formula is the one form every runtime reads. A forced backend that cannot run the call raises
:class:`BackendError` with the reason; nothing falls back silently: every call's
:class:`Dispatch` says what ran, why, and why each faster backend was passed over.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import BackendError
from .backends import BACKENDS, Problem
from .pair_kernel import exporting

log = logging.getLogger("attnkit.attention")

ORDER = {
    "cpu": ["sdpa", "blocksparse", "direct", "chunked"],
    "cuda": ["sdpa", "flex", "direct", "chunked"],
}
DEFAULT_ORDER = ["sdpa", "direct", "chunked"]
NOT_AUTOMATIC = {
    "cpu": {"flex": "not picked automatically on CPU: forward-only, compiles per shape (2-8 s), and "
                    "slower than sdpa/blocksparse on dense and ALiBi rows (faster forward only on "
                    "block-sparse masks once compiled; benchmarks/results/attention.json); "
                    "force it with backend='flex'"},
}


@dataclass
class Dispatch:
    """Which backend ran a call and why; ``passed_over`` lists faster ones and their reasons."""

    backend: str
    reason: str
    passed_over: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"backend: {self.backend} ({self.reason})"]
        lines += [f"  not {name}: {why}" for name, why in self.passed_over]
        return "\n".join(lines)


def choose_backend(p: Problem, force: str | None = None) -> Dispatch:
    """Pick the backend for ``p`` (or check the forced one)."""
    if force not in (None, "auto"):
        backend = BACKENDS.get(force, where="backend")
        why = backend.why_not(p)
        if why is not None:
            raise BackendError(f"backend {force!r} cannot run this attention: {why}")
        return Dispatch(force, "forced")
    if exporting():
        return Dispatch("reference", "exporting a graph: the fused and custom-gradient kernels have no ONNX form, "
                                     "the plain formula does (the runtime fuses it)")
    order = ORDER.get(p.device.type, DEFAULT_ORDER)
    passed = []
    for name in order:
        why = BACKENDS.get(name).why_not_automatic(p)
        if why is None:
            passed += list(NOT_AUTOMATIC.get(p.device.type, {}).items())
            kind = "first able" if not passed else "fastest able"
            d = Dispatch(name, f"{kind} for {p.device.type}, grad={'yes' if p.needs_grad else 'no'}", passed)
            log.debug("%s", d)
            return d
        passed.append((name, why))
    raise BackendError(f"no backend can run this attention: {passed}")  # chunked never refuses
