"""A run's model as one ONNX graph: traced from the model itself with a made-up batch,
every batch dimension dynamic, then checked against PyTorch at other batch sizes and lengths
(a size fixed while tracing is the usual way an exported graph goes wrong, and only running
it at another size shows it).

Attention runs its plain formula while tracing (:mod:`attnkit.attention.dispatch`): the
fused and custom-gradient kernels have no ONNX form, and ONNX Runtime fuses the plain ops.
What a task does after the logits (the CRF's Viterbi, top-k) stays in PyTorch.

The TorchScript-based exporter (``dynamo=False``) is used: ``torch.export`` cannot trace the
packed sequences of the LSTM/GRU encoders (it fails in ``pack_padded_sequence``, measured with
torch 2.13), and one exporter for every model is simpler to trust than two."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import DeployError, first_line
from ..tasks.prediction import stack_batches
from .engines import ort_session, require_onnx, run_session

log = logging.getLogger("attnkit")

OPSET = 17
TRACE_SHAPE = (3, 9)  # (examples, length) of the batch the graph is traced with
CHECK_SHAPES = ((1, 4), (4, 13), (2, 31))  # (examples, length) where the graph must match PyTorch
TOLERANCE = 1e-4  # max |difference| of a float output, fp32 ...
RELATIVE = 1e-6  # ... plus float32's own rounding of large outputs (~8 ulps of the largest |value|)


def allowed_difference(reference: torch.Tensor) -> float:
    """What the graph may differ from PyTorch by on one float output: :data:`TOLERANCE`, plus
    :data:`RELATIVE` of its largest magnitude (logits of 400 carry ~3e-5 of rounding per op;
    two op orders can part by more than 1e-4 there, at 1e-6 of the value); none for a
    non-float output."""
    if not reference.is_floating_point():
        return 0.0
    return TOLERANCE + RELATIVE * (reference.abs().max().item() if reference.numel() else 0.0)


class GraphModel(nn.Module):
    """A task model with tensors in and out: ``inputs`` (batch keys, in order) -> ``model(batch)``
    -> the ``outputs`` entries of its result, in order."""

    def __init__(self, model: nn.Module, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.outputs = model, list(inputs), list(outputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's outputs for one batch given as tensors."""
        out = self.model(dict(zip(self.inputs, tensors)))
        return tuple(out[k] for k in self.outputs)


def sample_batch(run, examples: int, size: int) -> dict:
    """A batch of ``examples`` made-up inputs of ``size`` units down to 1 (so it has padding),
    encoded as the run encodes real ones."""
    raw = run.task.sample_inputs(run.featurized, examples, size)
    return stack_batches([e.batch for e in run.task.encode_inputs(run.featurized, raw)])


def output_names(out: dict) -> list[str]:
    """The result entries a graph returns: every tensor but the attention weights (asked for
    only by explanations, which run in PyTorch)."""
    return [k for k, v in out.items() if isinstance(v, torch.Tensor) and k != "attention"]


@contextlib.contextmanager
def native_stderr_kept():
    """Holds back what native code writes to stderr (the exporter's C++ shape-inference
    warnings, which the parity check makes moot) and yields a list that receives it."""
    kept: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield kept
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            kept.append(f.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def module_path(model: nn.Module):
    """Yields a list that holds, while ``model`` runs, the names of the modules being run
    (outermost first): after an error, its last entry is where it happened."""
    stack: list[str] = []

    def enter(name: str):
        return lambda mod, args: stack.append(name)  # list.append returns None: the input is kept

    def leave(mod, args, out) -> None:  # returning anything would replace the module's output
        if stack:
            stack.pop()

    hooks = []
    for name, m in model.named_modules():
        hooks.append(m.register_forward_pre_hook(enter(name)))
        hooks.append(m.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for h in hooks:
            h.remove()


def export_graph(run, path: Path) -> dict:
    """Write ``run``'s model to ``path`` as ONNX and check it against PyTorch; returns what
    ``engine.json`` records (inputs, outputs, opset, the parity check)."""
    refusal = run.task.export_refusal
    if refusal:
        raise DeployError(f"{run.path}: a {run.cfg.task} model cannot be exported as one graph: {refusal}")
    require_onnx("exporting to ONNX")
    model = run.model.eval()
    batch = sample_batch(run, *TRACE_SHAPE)
    inputs = list(batch)
    with torch.no_grad():
        out = model(dict(batch))
    outputs = output_names(out)
    graph = GraphModel(model, inputs, outputs).eval()
    # every dimension dynamic: batch and length obviously, and nothing else is worth fixing
    axes = {k: {d: f"{k}_{d}" for d in range(t.dim())} for k, t in [*batch.items(), *((k, out[k]) for k in outputs)]}
    buffer = io.BytesIO()
    # not under no_grad: the legacy exporter then mistranslates some additions (measured)
    failure = None
    with module_path(model) as where, warnings.catch_warnings(), native_stderr_kept() as native:
        warnings.simplefilter("ignore")  # tracer warnings: the parity check below is what decides
        try:
            torch.onnx.export(graph, tuple(batch[k] for k in inputs), buffer, dynamo=False, opset_version=OPSET,
                              input_names=inputs, output_names=outputs, dynamic_axes=axes)
        except Exception as e:  # noqa: BLE001  (tracing and the exporter raise many kinds)
            failure = (first_line(e), where[-1] if where else None)
    if native and native[0].strip():  # the exporter's own C++ messages: shown with --debug
        log.debug(f"ONNX exporter output:\n{native[0].strip()}")
    if failure:
        first, at = failure
        if at is None:  # every module had finished: the traced graph could not be converted
            raise DeployError(f"{run.path}: cannot export the model: the traced graph has an operation ONNX "
                              f"opset {OPSET} cannot express: {first}")
        module = model.get_submodule(at) if at else model
        raise DeployError(f"{run.path}: cannot export the model: module `{at or 'model'}` "
                          f"({type(module).__name__}) failed while tracing: {first}")
    data = buffer.getvalue()
    parity = check_parity(run, graph, data, inputs, outputs)
    path.write_bytes(data)
    return {"format": "onnx", "opset": OPSET, "inputs": inputs, "outputs": outputs, "parity": parity}


def check_parity(run, graph: GraphModel, data: bytes, inputs: list[str], outputs: list[str]) -> dict:
    """Run the ONNX bytes and the PyTorch model on batches of :data:`CHECK_SHAPES`; the
    largest float difference per output, or :class:`DeployError` when it is over
    :func:`allowed_difference` (or a non-float output differs)."""
    session = ort_session(data, where="the exported graph")
    worst = {k: 0.0 for k in outputs}
    for examples, size in CHECK_SHAPES:
        batch = sample_batch(run, examples, size)
        try:
            with torch.no_grad():
                ref = graph(*(batch[k] for k in inputs))
        except Exception as e:  # noqa: BLE001  (a model that only takes some sizes, e.g. a deep CNN on small images)
            raise DeployError(f"{run.path}: PyTorch itself fails on the check batch of {examples} examples of "
                              f"{size} ({first_line(e)}); the export check needs a model that takes other sizes "
                              f"than the traced one") from None
        got = run_session(session, outputs, {k: batch[k].numpy() for k in inputs},
                          f"{run.path}: the exported graph at {examples} examples of {size}")
        for name, r, g in zip(outputs, ref, got):
            g = torch.from_numpy(g)
            if tuple(g.shape) != tuple(r.shape):
                raise DeployError(f"{run.path}: the exported graph's `{name}` has shape {tuple(g.shape)} at "
                                  f"{examples} examples of {size}, PyTorch {tuple(r.shape)}: a size was fixed "
                                  f"while tracing")
            diff = (g.double() - r.double()).abs().max().item() if r.numel() else 0.0
            worst[name] = max(worst[name], diff)
            allowed = allowed_difference(r)
            if diff > allowed:
                raise DeployError(f"{run.path}: the exported graph differs from PyTorch on `{name}` at {examples} "
                                  f"examples of {size} (max |difference| {diff:.3g}, allowed {allowed:.3g}): "
                                  f"the model computes something tracing cannot record (a branch on the data "
                                  f"or a size fixed while tracing)")
    return {"shapes": [list(s) for s in CHECK_SHAPES], "max_abs_diff": worst, "tolerance": TOLERANCE,
            "relative": RELATIVE}
