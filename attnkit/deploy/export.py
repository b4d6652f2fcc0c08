"""``attnkit export``: a run -> a new run directory that also holds its model as an ONNX
graph and an ``engine.json`` naming ONNX Runtime as its engine. LoRA/IA3 weights are merged
into the backbone first (the graph has no PEFT in it)."""
from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

from ..errors import DeployError
from ..finetune import merge_lora
from ..files import write_json
from ..run_files import ENGINE, EVAL, GRAPH, GRAPH_INT8, REPORT, WEIGHTS, RunFiles
from ..rundir import check_new_out, derived_run, load_run, save_weights
from .engines import read_engine, write_engine
from .graph import export_graph
from .merge import write_merged

FORMATS = ("onnx",)


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "onnx") -> Path:
    """Write ``out``: ``run_dir`` plus ``model.onnx`` (checked against PyTorch) and ``engine.json``."""
    run_dir, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise DeployError(f"--format: {fmt!r} is not an export format; known: {', '.join(FORMATS)}")
    if read_engine(run_dir).get("variant") == "int8":
        raise DeployError(f"{run_dir}: is already compressed to int8; export the run it was made from")
    with deployable_copy(run_dir, out) as (run, tmp):
        info = export_graph(run, tmp / GRAPH)
        write_engine(tmp, {"engine": "onnxruntime", "graph": GRAPH, "variant": "fp32", **info,
                           "exported_from": str(run_dir), "date": now()})
    return out


def now() -> str:
    """UTC time, to the second, as engine.json records it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def deployable_copy(run_dir: Path, out: Path, keep_eval: bool = True):
    """Yields ``(loaded run with LoRA/IA3 merged, temporary copy of the run without its graphs)``;
    the copy becomes ``out`` when the block succeeds (:func:`attnkit.rundir.derived_run`).
    ``keep_eval=False`` leaves out the source's evaluations and report (they would describe a
    model the copy no longer is: int8 weights)."""
    check_new_out(out)
    run = load_run(run_dir)
    merged = merge_lora(run.model)
    # a run that saved only its trained weights (bitfit, adapters, prefixes) would need
    # model.pretrained again to load: the deployed copy saves every weight
    partial = run.meta.get("weights") == "trained"
    skip = (GRAPH, GRAPH_INT8, ENGINE) + ((WEIGHTS,) if merged or partial else ()) + (
        () if keep_eval else (EVAL, REPORT, "eval-*.json"))
    with derived_run(run_dir, out, skip=skip) as tmp:
        if merged:
            write_merged(run, tmp, merged_from=run_dir)
        elif partial:
            save_weights(run.model, RunFiles(tmp).weights, everything=True)
            write_json(RunFiles(tmp).meta, {**run.meta, "weights": "all"})
        yield run, tmp
