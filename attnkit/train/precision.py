"""Precision chosen for the CPU it runs on: ``fp32``, ``bf16`` (autocast: bf16 matrix products,
fp32 master weights and reductions) or ``auto``.

No fixed choice is right everywhere: measured on an Intel Xeon with AMX, bf16 matrix products
ran 5.9x faster than fp32; on an AMD EPYC without bf16 units, 6.5x slower; and even with AMX
an elementwise-bound kernel (additive attention's ``tanh``) ran 3.2x slower in bf16. ``auto``
therefore measures, in two stages, each fp32 against bf16 autocast in interleaved repetitions:

1. the machine: one ``Linear`` the size of a small model's layer (about 0.1-0.3 s). Where bf16
   is not clearly faster (:data:`BF16_MIN_SPEEDUP`) no model can gain, and fp32 it is;
2. the run's own work (:class:`WorkProbe`: a training step, forward and backward, or a
   prediction batch), when the caller has one: a machine with bf16 units still does not speed
   up a model whose time goes elsewhere (measured: a BiLSTM + attention trained 0.96x as fast
   in bf16 on a CPU whose bf16 ``Linear`` ran 1.79x), and bf16 costs accuracy there for nothing.

Answers are cached per CPU model, torch version and thread count (and, for the second stage,
per model architecture, frozen weights and batch shape) in ``~/.cache/attnkit/precision.json``
(``ATTNKIT_CACHE`` moves it), so later runs on the same machine decide instantly, and every choice says why."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..attention.backends.threads import BUSY_CORE, cpu_seconds, others_busy_between
from ..errors import ConfigError
from ..files import cache_root, write_json
from .bf16_weights import bf16_weights

log = logging.getLogger("attnkit")
PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this much: the casts and rounding have a cost
PROBE_SHAPE = (256, 768, 768)  # rows x in x out of the probed Linear (a MiniLM-sized layer)
PROBE_REPS = 5
WORK_REPS = 2  # timed runs of the run's own step per precision, after one warm-up each


def precision_error(value: str) -> str | None:
    """A config field's check (:func:`attnkit.config.checked`): None for a known precision."""
    return None if value in PRECISIONS else f"must be one of {', '.join(PRECISIONS)}, got {value!r}"


@dataclass(frozen=True)
class PrecisionChoice:
    """What runs (``fp32`` or ``bf16``) and why."""

    name: str
    why: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: plain fp32)."""
        return torch.bfloat16 if self.name == "bf16" else None

    @contextlib.contextmanager
    def autocast(self, model: torch.nn.Module | None = None):
        """The context the model's forward runs in; given the ``model`` (inference), under bf16
        its weights declared safe are held in bf16 too (:mod:`attnkit.train.bf16_weights`),
        instead of cast again by autocast on every call."""
        if self.name != "bf16":
            yield
            return
        with bf16_weights(model), torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    def frozen_weights(self, model: torch.nn.Module):
        """A training step's context (forward and backward, which reads them): under bf16, the
        model's declared weights that do not train are held in bf16."""
        return bf16_weights(model, frozen_only=True) if self.name == "bf16" else contextlib.nullcontext()

    def __str__(self) -> str:
        return f"precision {self.name} ({self.why})"


def cpu_name() -> str:
    """The CPU model as the OS names it (``/proc/cpuinfo``), else the platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cache_path() -> Path:
    """Where probe results are kept."""
    return cache_root() / "precision.json"


@dataclass(frozen=True)
class WorkProbe:
    """The run's own work for ``auto``'s second stage: ``step()`` runs it once; ``model`` and
    ``what`` (say ``train batch 32``) name it in the cache."""

    model: torch.nn.Module
    step: Callable[[], object]
    what: str

    @property
    def key(self) -> str:
        """The model's class and a digest of its parameter shapes and which of them train (a
        frozen layer has no weight gradient to compute), and ``what``."""
        shapes = ";".join(f"{name}{tuple(p.shape)}{'' if p.requires_grad else ' frozen'}"
                          for name, p in self.model.named_parameters())
        return f"{type(self.model).__name__} {hashlib.sha1(shapes.encode()).hexdigest()[:12]} {self.what}"


def batch_size_text(batch: dict) -> str:
    """``32x47``: the shape of a batch's largest tensor (its token ids, its images), the size
    the work grows with, for :class:`WorkProbe`'s ``what``."""
    tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
    return "x".join(map(str, max(tensors, key=torch.Tensor.numel).shape)) if tensors else "?"


def model_work(model: torch.nn.Module, forward: Callable[[], object], what: str,
               loss: Callable[[object], torch.Tensor] | None = None) -> WorkProbe:
    """A :class:`WorkProbe` that runs ``forward()`` (and, for training, ``loss(output)``
    backward) leaving no trace: in eval mode, so dropout draws nothing and normalisation keeps
    its statistics; afterwards every module's train/eval flag, the random state and the
    parameters' gradients are as they were."""
    def step():
        modes, rng = {m: m.training for m in model.modules()}, torch.get_rng_state()
        grads = {p: p.grad for p in model.parameters()} if loss is not None else {}
        model.eval()
        try:
            if loss is None:
                with torch.inference_mode():
                    forward()
            else:
                for p in grads:
                    p.grad = None
                loss(forward()).backward()
        finally:
            for m, training in modes.items():
                m.training = training
            torch.set_rng_state(rng)
            for p, g in grads.items():
                p.grad = g
    return WorkProbe(model, step, what)


def _interleaved(run: Callable[[], object], reps: int) -> dict:
    """Milliseconds of ``run()`` in fp32 and under bf16 autocast (best of ``reps``, the two
    interleaved after a warm-up round) and their ratio."""
    times = {"fp32": [], "bf16": []}
    for rep in range(reps + 1):
        for name in ("fp32", "bf16"):
            with PrecisionChoice(name, "probe").autocast():
                t0 = time.perf_counter()
                run()
                elapsed = time.perf_counter() - t0
            if rep:  # the first round warms up both
                times[name].append(elapsed * 1e3)
    fp32, bf16 = min(times["fp32"]), min(times["bf16"])
    return {"fp32_ms": round(fp32, 4), "bf16_ms": round(bf16, 4), "bf16_speedup": round(fp32 / bf16, 3)}


def probe() -> dict:
    """Milliseconds of one Linear forward in fp32 and under bf16 autocast (best of
    :data:`PROBE_REPS`, interleaved) and their ratio."""
    rows, n_in, n_out = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n_in, generator=gen)
    layer = torch.nn.Linear(n_in, n_out)
    with torch.inference_mode():
        return _interleaved(lambda: layer(x), PROBE_REPS)


def probe_work(work: WorkProbe) -> dict:
    """:func:`probe` for the run's own work (best of :data:`WORK_REPS`)."""
    return _interleaved(work.step, WORK_REPS)


def _key() -> str:
    return f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def measured_speedup(refresh: bool = False, work: WorkProbe | None = None) -> tuple[dict, bool]:
    """``(probe result, whether it came from the cache)`` for this CPU, torch and thread count:
    of the ``Linear`` probe, or of ``work`` when given."""
    path, key = cache_path(), _key() if work is None else f"{_key()} | {work.key}"
    cache = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}  # a damaged cache is measured again
    if not isinstance(cache, dict):
        cache = {}
    hit = cache.get(key)
    if not refresh and isinstance(hit, dict) and isinstance(hit.get("bf16_speedup"), (int, float)):
        return hit, True
    before, t0 = cpu_seconds(), time.monotonic()
    result = probe() if work is None else probe_work(work)
    busy = others_busy_between(before, cpu_seconds(), time.monotonic() - t0)
    if busy >= BUSY_CORE:
        # measured while other processes kept a core busy (seen: bf16 0.50x here under load, 1.79x
        # quiet): good enough for this run, not to be remembered for this machine
        return {**result, "busy_cores": round(busy, 2)}, False
    cache = {**cache, key: result}
    with contextlib.suppress(OSError):  # a read-only home still gets an answer, only not a cached one
        write_json(path, cache)
    return result, False


def _source(result: dict, cached: bool) -> str:
    if "busy_cores" in result:
        return f"probe while other processes kept {result['busy_cores']:g} cores busy: not cached"
    return "cached probe" if cached else "probe"


def choose_precision(name: str, where: str = "precision", work: WorkProbe | None = None) -> PrecisionChoice:
    """The precision to run: ``fp32`` and ``bf16`` as asked, ``auto`` by the cached probes: the
    machine's ``Linear``, then, where that says bf16 can pay, ``work`` (the run's own step)."""
    if name not in PRECISIONS:
        raise ConfigError(f"{where}: {name!r} is not a precision; known: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return PrecisionChoice("fp32", "asked for")
    if name == "bf16":
        return PrecisionChoice("bf16", "asked for: bf16 autocast, fp32 master weights")
    result, cached = measured_speedup()
    facts = (f"bf16 Linear {result['bf16_speedup']:.2f}x fp32 on {cpu_name()} "
             f"({_source(result, cached)}, {cache_path()})")
    if result["bf16_speedup"] < BF16_MIN_SPEEDUP:
        return PrecisionChoice("fp32", f"auto: {facts}, under {BF16_MIN_SPEEDUP}x")
    if work is None:
        return PrecisionChoice("bf16", f"auto: {facts}, at least {BF16_MIN_SPEEDUP}x")
    own, cached = measured_speedup(work=work)
    facts = f"{facts}; bf16 {work.what} {own['bf16_speedup']:.2f}x fp32 ({_source(own, cached)})"
    if own["bf16_speedup"] < BF16_MIN_SPEEDUP:
        return PrecisionChoice("fp32", f"auto: {facts}, under {BF16_MIN_SPEEDUP}x")
    return PrecisionChoice("bf16", f"auto: {facts}, both at least {BF16_MIN_SPEEDUP}x")


def inference_precision(name: str, where: str = "--precision", engine: str = "torch",
                        work: WorkProbe | None = None) -> PrecisionChoice:
    """The precision prediction or evaluation runs in, said once in the log unless plain fp32;
    ``work``: a prediction batch for ``auto`` to time. A graph on ONNX Runtime runs in its own
    precision (fp32 or int8): asking for another is said."""
    if engine != "torch" and name in PRECISIONS and name != "fp32":  # no probe for a choice not taken
        log.warning(f"{where} {name}: ignored, the {engine} engine runs the graph in the precision it was "
                    f"exported in")
        return PrecisionChoice("fp32", f"the {engine} engine")
    choice = choose_precision(name, where, work)
    if name != "fp32":
        log.info(f"running in {choice}")
    return choice
