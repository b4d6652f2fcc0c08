"""What runs a run's model when it predicts: ``torch`` (the model itself) or
``onnxruntime`` (the graph ``attnkit export`` or ``attnkit compress`` wrote).

An exported run's ``engine.json`` names its engine and graph file, so ``predict``,
``evaluate`` and (next) the HTTP service use the graph without being told; ``--engine``
overrides it. Only the network runs on the engine: encoding, the CRF's Viterbi, top-k and
explanations (which need gradients) stay in PyTorch on the run's own weights."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import DeployError, first_line
from ..files import write_json
from ..registry import Registry
from ..rundir import LoadedRun
from ..run_files import RunFiles

log = logging.getLogger("attnkit")
ENGINES: Registry[Callable[[LoadedRun, dict], LoadedRun]] = Registry("engine")


def import_onnxruntime():
    """The ``onnxruntime`` module, or a :class:`DeployError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DeployError("engine onnxruntime is not installed: pip install onnxruntime (or pip install "
                          "'attnkit[deploy]')") from None
    return onnxruntime


def require_onnx(why: str) -> None:
    """The ``onnx`` package (the exporter and the int8 quantizer need it; onnxruntime does not
    pull it in), or a :class:`DeployError` saying how to install it."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise DeployError(f"{why} needs the onnx package, which is not installed: pip install onnx (or pip install "
                          f"'attnkit[deploy]')") from None


def ort_session(source: bytes | Path, where: str):
    """An ONNX Runtime CPU session on a graph (bytes or a file), using torch's thread count."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    # fatal only: its warnings (unused initializers) are noise, and a failing run is raised
    # below as one DeployError, so its own error log line would say the same thing twice
    opts.log_severity_level = 4
    try:
        return ort.InferenceSession(source if isinstance(source, bytes) else str(source), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own error types)
        raise DeployError(f"{where}: not a graph ONNX Runtime can run ({first_line(e)})") from None


def run_session(session, outputs: list[str], feeds: dict, where: str) -> list:
    """``session.run``, its failures (a shape the graph cannot take) as one :class:`DeployError`."""
    try:
        return session.run(outputs, feeds)
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own error types)
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
        raise DeployError(f"{where}: ONNX Runtime failed on inputs {shapes} ({first_line(e)}); a size may have "
                          f"been fixed while tracing: export the run again") from None


def verified_graph(run_dir: Path, spec: dict) -> Path:
    """The graph file ``engine.json`` names, checked to exist and to be the file that was written."""
    if not spec.get("graph"):
        raise DeployError(f"{run_dir}: has no ONNX graph; write one with `attnkit export {run_dir} --out "
                          f"{run_dir}-onnx` (or `attnkit compress ... --int8`)")
    name = spec["graph"]
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise DeployError(f"{RunFiles(run_dir).engine}: damaged (`graph` must be a file name inside the run, got "
                          f"{name!r}); export the run again")
    graph = Path(run_dir) / name
    if not graph.is_file():
        raise DeployError(f"{graph}: missing (engine.json names it); export the run again")
    if spec.get("sha256") and sha256(graph) != spec["sha256"]:
        raise DeployError(f"{graph}: does not match its run (changed since export: its SHA-256 differs from "
                          f"engine.json's); export the run again")
    return graph


def sha256(path: Path) -> str:
    """The file's SHA-256 (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_engine(run_dir: Path) -> dict:
    """``engine.json`` of a run (``{}`` for a run that was never exported)."""
    path = RunFiles(run_dir).engine
    if not path.is_file():
        return {}
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: damaged (not JSON: {e}); export the run again") from None
    if not isinstance(spec, dict) or "engine" not in spec:
        raise DeployError(f"{path}: damaged (no `engine`); export the run again")
    return spec


def write_engine(run_dir: Path, spec: dict) -> None:
    """``engine.json``, with the graph file's SHA-256 (checked when it is loaded)."""
    if spec.get("graph"):
        spec = {**spec, "sha256": sha256(Path(run_dir) / spec["graph"])}
    write_json(RunFiles(run_dir).engine, spec)


class OrtModel(nn.Module):
    """A run's ONNX graph in its torch model's place: ``forward(batch)`` runs the graph;
    ``loss``, ``predict``, the head and every other attribute are the torch model's."""

    def __init__(self, model: nn.Module, session, inputs: list[str], outputs: list[str], where: str):
        super().__init__()
        self.torch_model = model
        self.session, self.inputs, self.outputs, self.where = session, inputs, outputs, where

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """The graph's outputs for one batch, as torch tensors."""
        missing = [k for k in self.inputs if k not in batch]
        if missing:
            raise DeployError(f"{self.where}: the graph needs {missing}, which this run's encoding does not give; "
                              f"the graph does not match its run (export it again)")
        result = run_session(self.session, self.outputs, {k: batch[k].numpy() for k in self.inputs}, self.where)
        return {k: torch.from_numpy(v) for k, v in zip(self.outputs, result)}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("torch_model")
            if inner is None:  # half-built (copying, unpickling): no torch model to ask yet
                raise
            return getattr(inner, name)


@ENGINES.register("torch")
def torch_engine(run: LoadedRun, spec: dict | None) -> LoadedRun:
    """The model itself (fp32 weights from ``model.safetensors``)."""
    if spec and spec.get("variant") == "int8":
        log.info(f"{run.path}: predicting with the fp32 torch weights, not the int8 graph (--engine onnxruntime)")
    return run


@ENGINES.register("onnxruntime")
def onnxruntime_engine(run: LoadedRun, spec: dict | None) -> LoadedRun:
    """The run's ONNX graph on ONNX Runtime (checked to be the file that was exported)."""
    graph = verified_graph(run.path, spec or {})
    session = ort_session(graph, str(graph))
    names = [i.name for i in session.get_inputs()]
    if names != list(spec.get("inputs", names)):
        raise DeployError(f"{graph}: does not match its run (graph inputs {names}, engine.json {spec.get('inputs')})")
    run.model = OrtModel(run.model, session, names, [o.name for o in session.get_outputs()], str(graph))
    return run


def attach_engine(run: LoadedRun, engine: str | None = None) -> LoadedRun:
    """``run`` predicting on ``engine``: ``torch``, ``onnxruntime``, or None for the one its
    ``engine.json`` names (torch when it has none). ``--engine torch`` works even when
    ``engine.json`` is damaged: it reads nothing of it."""
    if engine == "torch":
        return ENGINES.get("torch")(run, None)
    make = ENGINES.get(engine, where="--engine") if engine else None
    spec = read_engine(run.path)
    return (make or ENGINES.get(spec.get("engine", "torch"), where=str(run.files.engine)))(run, spec)


def engine_name(run: LoadedRun) -> str:
    """Which engine a loaded run predicts on."""
    return "onnxruntime" if isinstance(run.model, OrtModel) else "torch"
