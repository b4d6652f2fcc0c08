"""``attnkit compress RUN --int8``: dynamic int8 quantization of the exported graph's weights
(matrix products, LSTMs, embedding look-ups) by ONNX Runtime's quantizer; activations are
quantized per batch at run time. The compressed run keeps only the int8 graph (and the fp32
weights that explanations need) and records how far its logits moved from PyTorch's."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch

from ..errors import DeployError, first_line
from ..run_files import GRAPH, GRAPH_INT8
from .engines import (OrtModel, import_onnxruntime, ort_session, read_engine, require_onnx, verified_graph,
                      write_engine)
from .export import deployable_copy, now
from .graph import CHECK_SHAPES, export_graph, sample_batch


def compress_run(run_dir: str | Path, out: str | Path, int8: bool = True, per_channel: bool = True,
                 reduce_range: bool = True) -> Path:
    """Write ``out``: ``run_dir``'s graph (exported now unless the run has one) quantized to int8
    (options: :func:`quantize_int8`)."""
    run_dir, out = Path(run_dir), Path(out)
    if not int8:
        raise DeployError("compress: say what to do (--int8)")
    spec = read_engine(run_dir)
    if spec.get("variant") == "int8":
        raise DeployError(f"{run_dir}: is already quantized to int8 (engine.json); compress the run it was made from")
    import_onnxruntime()
    require_onnx("int8 quantization")
    with deployable_copy(run_dir, out, keep_eval=False) as (run, tmp):
        if spec.get("graph"):
            info = {k: spec[k] for k in ("format", "opset", "inputs", "outputs") if k in spec}
            (tmp / GRAPH).write_bytes(verified_graph(run_dir, spec).read_bytes())
        else:
            info = export_graph(run, tmp / GRAPH)
            info.pop("parity", None)
        quantize_int8(tmp / GRAPH, tmp / GRAPH_INT8, per_channel=per_channel, reduce_range=reduce_range)
        (tmp / GRAPH).unlink()
        drift = int8_drift(run, tmp / GRAPH_INT8, info["inputs"])
        write_engine(tmp, {"engine": "onnxruntime", "graph": GRAPH_INT8, "variant": "int8", **info,
                           "int8": {"per_channel": per_channel, "reduce_range": reduce_range},
                           "int8_drift": drift, "compressed_from": str(run_dir), "date": now()})
    return out


def quantize_int8(src: Path, dst: Path, per_channel: bool = True, reduce_range: bool = True) -> None:
    """ONNX Runtime's dynamic quantization: int8 weights, per-batch activation scales.

    ``per_channel``: one scale per output column of each weight (not one per matrix), which
    keeps a column of small weights from being rounded away beside one large column.
    ``reduce_range``: weights on 7 bits ([-64, 64]) so that x86 CPUs without VNNI, whose
    u8 x s8 instruction adds pairs of products into a saturating 16-bit sum, cannot overflow
    (255 x 127 x 2 does; 255 x 64 x 2 does not). A compressed run is meant to move between
    machines, so the default is the choice that is right on all of them; on a VNNI CPU it
    costs one bit of weight precision, which per-channel scales make up for (measured in
    ``benchmarks/deploy.py``)."""
    import_onnxruntime()
    require_onnx("int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing through the root logger on every call
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range, extra_options={"MatMulConstBOnly": True})
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (the quantizer raises whatever its graph passes raise)
        raise DeployError(f"{src.name}: ONNX Runtime's int8 quantizer failed ({first_line(e)})") from None
    finally:
        root.setLevel(level)


def int8_drift(run, graph: Path, inputs: list[str]) -> dict:
    """How far the int8 graph's logits moved from PyTorch's fp32 on the check batches: the
    largest |difference| and the share of predictions (rows, or unpadded tokens) whose top
    class changed."""
    session = ort_session(graph, str(graph))
    model = OrtModel(run.model, session, inputs, [o.name for o in session.get_outputs()], str(graph))
    worst, changed, counted = 0.0, 0, 0
    for examples, size in CHECK_SHAPES:
        batch = sample_batch(run, examples, size)
        with torch.no_grad():
            ref = run.model(dict(batch))
        got = model(batch)
        keep = ref["mask"] if "mask" in ref else torch.ones(ref["logits"].shape[:-1], dtype=torch.bool)
        worst = max(worst, (got["logits"] - ref["logits"]).abs().amax(-1)[keep].max().item())
        changed += int((got["logits"].argmax(-1) != ref["logits"].argmax(-1))[keep].sum())
        counted += int(keep.sum())
    return {"max_abs_logit_diff": round(worst, 6), "top_class_changed": f"{changed}/{counted}",
            "note": "on made-up check inputs; accuracy on real data: attnkit evaluate"}
