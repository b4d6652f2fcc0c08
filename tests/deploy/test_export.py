"""``attnkit export`` / ``compress`` and the onnxruntime engine on small trained runs of every
task: the graph is run by ONNX Runtime directly at sizes it was neither traced nor checked at
and compared with the PyTorch model; predictions and metrics through the engine equal the
torch engine's; every refusal is one clear error."""
import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

ort = pytest.importorskip("onnxruntime", reason="needs the deploy extra: pip install 'attnkit[deploy]'")

from attnkit.cli import app  # noqa: E402
from attnkit.deploy import attach_engine, compress_run, export_run, read_engine  # noqa: E402
from attnkit.deploy.graph import CHECK_SHAPES, TRACE_SHAPE, allowed_difference, sample_batch  # noqa: E402
from attnkit.errors import DeployError  # noqa: E402
from attnkit.run import RunError, evaluate, load_run, predict, train  # noqa: E402
from tests.fuzz.contract import invoke  # noqa: E402
from tests.run.conftest import make_conll_files  # noqa: E402

TEXTS = ["the film was very good", "dull", "a very bad movie but the plot was fine and good good", "good"]
OTHER_SHAPES = ((5, 17), (1, 40), (7, 2))  # neither the traced shape nor a checked one


def test_the_extra_shapes_are_new():
    assert not set(OTHER_SHAPES) & {TRACE_SHAPE, *CHECK_SHAPES}


def graph_outputs(run_dir, batch) -> dict:
    """The exported graph run by onnxruntime itself (not through attnkit's engine)."""
    spec = read_engine(run_dir)
    s = ort.InferenceSession(str(run_dir / spec["graph"]), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, {i.name: batch[i.name].numpy() for i in s.get_inputs()})))


@pytest.fixture(scope="module")
def crf_tagger_run(tmp_path_factory):
    """BiLSTM + character CNN + CRF tagger: the Viterbi decoding stays outside the graph."""
    f = make_conll_files(tmp_path_factory.mktemp("conll-crf"))
    out = tmp_path_factory.mktemp("crf") / "run"
    train({"task": "token_classification", "data": {"train": str(f["train"]), "dev": str(f["dev"])},
           "model": {"embedding": {"dim": 16}, "chars": {"char_dim": 8, "channels": 8},
                     "encoder": {"type": "lstm", "hidden": 16}, "head": {"crf": True}},
           "train": {"epochs": 3, "batch_size": 16, "metric": "f1", "report": False,
                     "optimizer": {"name": "adam", "lr": 0.01}}}, out=out, progress=False)
    return out


def images(n, side, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, (n, side, side)).astype(np.float32))


RUNS = ["text_run", "transformer_run", "tagger_run", "crf_tagger_run", "image_run"]


@pytest.mark.parametrize("name", RUNS)
def test_graph_matches_pytorch_at_new_batch_sizes_and_lengths(name, request, tmp_path):
    run_dir = request.getfixturevalue(name)
    out = export_run(run_dir, tmp_path / "onnx")
    spec = read_engine(out)
    assert spec["engine"] == "onnxruntime" and spec["variant"] == "fp32" and (out / "model.onnx").is_file()
    run = load_run(run_dir)
    for examples, size in OTHER_SHAPES:
        batch = sample_batch(run, examples, size)
        with torch.no_grad():
            ref = run.model(dict(batch))
        got = graph_outputs(out, batch)
        assert set(got) == {k for k, v in ref.items() if isinstance(v, torch.Tensor) and k != "attention"}
        for k, v in got.items():
            assert v.shape == tuple(ref[k].shape), (k, examples, size)
            # 1e-4, plus float32 rounding where outputs are large (the image fixture's logits reach 400)
            np.testing.assert_allclose(v, ref[k].numpy(), atol=allowed_difference(ref[k]), rtol=0,
                                       err_msg=f"{k} at {examples}x{size}")


@pytest.mark.parametrize("name", ["text_run", "transformer_run", "tagger_run", "crf_tagger_run"])
def test_predict_on_onnxruntime_equals_torch(name, request, tmp_path):
    run_dir = request.getfixturevalue(name)
    out = export_run(run_dir, tmp_path / "onnx")
    on_torch = predict(run_dir, TEXTS)
    on_graph = predict(out, TEXTS)  # engine.json names onnxruntime
    assert type(load_run(out).model).__name__ != "OrtModel"  # load_run alone is PyTorch
    assert type(attach_engine(load_run(out)).model).__name__ == "OrtModel"
    for a, b in zip(on_torch, on_graph):
        assert a.get("label") == b.get("label") and a.get("tags") == b.get("tags")
        for label, p in a.get("scores", {}).items():
            assert b["scores"][label] == pytest.approx(p, abs=1e-5)
    assert predict(out, TEXTS, engine="torch") == on_torch


def test_crf_viterbi_stays_in_pytorch(crf_tagger_run, tmp_path):
    out = export_run(crf_tagger_run, tmp_path / "onnx")
    assert read_engine(out)["outputs"] == ["logits", "mask"]


def test_image_predictions_and_metrics_on_onnxruntime_equal_torch(image_run, tmp_path):
    out = export_run(image_run, tmp_path / "onnx")
    pics = images(3, 12) + images(2, 12, seed=1)
    assert [p["label"] for p in predict(out, pics)] == [p["label"] for p in predict(image_run, pics)]


def test_evaluate_on_onnxruntime_equals_torch(text_run, text_files_s, tmp_path):
    out = export_run(text_run, tmp_path / "onnx")
    a = evaluate(text_run, text_files_s["test"])
    b = evaluate(out, text_files_s["test"])
    assert a["accuracy"] == b["accuracy"] and b["loss"] == pytest.approx(a["loss"], abs=1e-5)


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, text_files_s):
    """A BiLSTM wide enough that its weights, not the graph's bookkeeping, fill the file."""
    f = text_files_s
    out = tmp_path_factory.mktemp("wide") / "run"
    train({"task": "text_classification",
           "data": {"train": str(f["train"]), "dev": str(f["dev"]), "text_column": "sentence"},
           "model": {"embedding": {"dim": 64}, "encoder": {"type": "lstm", "hidden": 96},
                     "pooler": {"type": "attention"}},
           "train": {"epochs": 3, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.005}}},
          out=out, progress=False)
    return out


def test_int8_is_smaller_and_as_accurate(wide_run, text_files_s, tmp_path):
    fp32 = export_run(wide_run, tmp_path / "onnx")
    int8 = compress_run(wide_run, tmp_path / "int8")
    spec = read_engine(int8)
    assert spec["variant"] == "int8" and spec["graph"] == "model.int8.onnx" and not (int8 / "model.onnx").exists()
    ratio = (fp32 / "model.onnx").stat().st_size / (int8 / "model.int8.onnx").stat().st_size
    assert ratio >= 3.0, ratio
    a = evaluate(wide_run, text_files_s["test"])["accuracy"]
    b = evaluate(int8, text_files_s["test"])["accuracy"]
    assert b >= a - 0.03, (a, b)
    assert spec["int8_drift"]["max_abs_logit_diff"] < 0.5
    # compressing an exported run reuses its graph
    again = compress_run(fp32, tmp_path / "int8-from-onnx")
    assert read_engine(again)["variant"] == "int8"
    with pytest.raises(DeployError, match="already quantized to int8"):
        compress_run(int8, tmp_path / "twice")
    with pytest.raises(DeployError, match="already compressed to int8"):
        export_run(int8, tmp_path / "onnx-of-int8")


def _int8_weights(graph) -> tuple[list, list]:
    """The int8 weight matrices of a quantized graph and the scales beside them (ORT names a
    quantized initializer ``W_quantized`` with ``W_scale``)."""
    import onnx
    from onnx import numpy_helper

    init = {t.name: t for t in onnx.load(str(graph)).graph.initializer}
    weights, scales = [], []
    for name, t in init.items():
        if name.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8:
            weights.append(numpy_helper.to_array(t))
            scales.append(numpy_helper.to_array(init[name[:-len("_quantized")] + "_scale"]))
    return weights, scales


def _per_column(weights, scales) -> list[bool]:
    """For each int8 matrix: has it one scale per output column (more than one column)?"""
    return [w.shape[-1] > 1 and s.shape[-1:] == w.shape[-1:] for w, s in zip(weights, scales)]


def test_int8_weights_fit_seven_bits_with_a_scale_per_column(wide_run, tmp_path):
    # defaults: per-channel scales, 7-bit weights (no u8 x s8 saturation on CPUs without VNNI)
    int8 = compress_run(wide_run, tmp_path / "int8")
    weights, scales = _int8_weights(int8 / "model.int8.onnx")
    assert len(weights) >= 3  # the LSTM's, the pooler's and the head's matrices at least
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    assert sum(_per_column(weights, scales)) >= 3  # LSTM, pooler and head matrices: a scale per column
    assert read_engine(int8)["int8"] == {"per_channel": True, "reduce_range": True}
    # the older choice is still there when asked: one scale per matrix, the full 8 bits
    plain = compress_run(wide_run, tmp_path / "plain", per_channel=False, reduce_range=False)
    weights, scales = _int8_weights(plain / "model.int8.onnx")
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) > 64
    assert not any(_per_column(weights, scales))


# ---------------------------------------------------------------- refusals, one clear error each

def test_a_module_without_an_onnx_form_is_named(text_run, tmp_path, monkeypatch):
    from attnkit.attention import functional
    from attnkit.attention.dispatch import Dispatch

    monkeypatch.setattr(functional, "choose_backend", lambda p, force=None: Dispatch("chunked", "forced"))
    with pytest.raises(DeployError, match=r"module `pooler\.[\w.]+` \(\w+\) failed while tracing"):
        export_run(text_run, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


def test_a_size_fixed_while_tracing_is_caught_by_the_parity_check(text_run, tmp_path, monkeypatch):
    from attnkit.models.classifiers import TextClassifier

    real = TextClassifier.forward

    def frozen(self, batch, need_weights=False):  # a Python int from the data: constant in the trace
        cut = int(batch["lengths"].max())
        return real(self, {"tokens": batch["tokens"][:, :cut], "lengths": batch["lengths"]}, need_weights)

    monkeypatch.setattr(TextClassifier, "forward", frozen)
    with pytest.raises(DeployError, match="differs from PyTorch on `logits`|a size may have been fixed while tracing"):
        export_run(text_run, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_translation_runs_say_why_they_are_not_exported(tmp_path):
    from tests.tasks.test_translation import config, make_pairs

    run = tmp_path / "tr"
    train(config(make_pairs(tmp_path, n_train=40), epochs=1), out=run, progress=False)
    r = invoke(["export", run, "--out", tmp_path / "x"])
    assert r.kind == "clean_error" and r.code == 2 and "search loop" in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.err.startswith("error:")
    assert not (tmp_path / "x").exists()


def test_a_graph_changed_after_export_is_refused(text_run, tmp_path):
    out = export_run(text_run, tmp_path / "onnx")
    data = bytearray((out / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DeployError, match="does not match its run"):
        predict(out, TEXTS)
    assert predict(out, TEXTS, engine="torch")  # the run's own weights still work


def test_a_damaged_engine_file_and_a_missing_graph_are_named(text_run, tmp_path):
    out = export_run(text_run, tmp_path / "onnx")
    (out / "model.onnx").unlink()
    with pytest.raises(DeployError, match=r"model\.onnx: missing"):
        predict(out, TEXTS)
    (out / "engine.json").write_text("{not json")
    with pytest.raises(DeployError, match=r"engine\.json: damaged"):
        predict(out, TEXTS)
    (out / "engine.json").write_text('{"engine": "onnxruntime", "graph": "../elsewhere.onnx"}')
    with pytest.raises(DeployError, match=r"engine\.json: damaged \(`graph` must be a file name inside the run"):
        predict(out, TEXTS)


def test_compress_without_the_onnx_package_says_how_to_install(text_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    for name in [m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "onnxruntime.quantization"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(DeployError, match=r"int8 quantization needs the onnx package, which is not installed: pip install onnx"):
        compress_run(text_run, tmp_path / "int8")
    assert not (tmp_path / "int8").exists() and not list(tmp_path.glob(".int8.*"))


def test_an_unwritable_out_is_one_error_and_leaves_nothing(text_run, tmp_path, monkeypatch):
    import shutil

    from attnkit.errors import WriteError

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", full_disk)
    with pytest.raises(WriteError, match=r"--out .*x: could not be written \(.*No space left on device"):
        export_run(text_run, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


def test_onnxruntime_not_installed_says_how_to_install(text_run, tmp_path, monkeypatch):
    out = export_run(text_run, tmp_path / "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(DeployError, match=r"not installed: pip install onnxruntime"):
        predict(out, TEXTS)


def test_engine_and_output_errors_on_the_command_line(text_run, tmp_path):
    def error(*argv):
        r = invoke(list(argv))
        assert r.kind == "clean_error" and r.code == 2, (r.kind, r.err)
        return r.err

    assert "has no ONNX graph" in error("predict", text_run, "good", "--engine", "onnxruntime")
    assert "attnkit export" in error("predict", text_run, "good", "--engine", "onnxruntime")
    err = error("predict", text_run, "good", "--engine", "tensorrt")
    assert "unknown engine 'tensorrt'" in err and "onnxruntime" in err
    (tmp_path / "taken").mkdir()
    assert "already exists" in error("export", text_run, "--out", tmp_path / "taken")
    assert "'tflite' is not an export format" in error("export", text_run, "--out", tmp_path / "x", "--format",
                                                       "tflite")
    assert "--int8" in error("compress", text_run, "--out", tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_and_compress_commands_print_what_they_wrote(text_run, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(text_run), "--out", str(tmp_path / "onnx")])
    assert r.exit_code == 0, r.output
    assert "exported:" in r.output and "max |difference| from PyTorch" in r.output
    r = runner.invoke(app, ["compress", str(tmp_path / "onnx"), "--out", str(tmp_path / "int8"), "--int8"])
    assert r.exit_code == 0, r.output
    assert "model.int8.onnx" in r.output and "top class changed on" in r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "int8"), "the film was very good", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output.strip().splitlines()[-1])
    assert rec["label"] in ("pos", "neg")


def test_an_existing_output_directory_is_never_overwritten(text_run, tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "mine.txt").write_text("x")
    with pytest.raises(RunError, match="already exists"):
        export_run(text_run, tmp_path / "keep")
    assert (tmp_path / "keep" / "mine.txt").read_text() == "x"


def test_predict_and_evaluate_take_a_precision(text_run, tmp_path, monkeypatch, caplog):
    """``--precision bf16`` runs the torch engine under bf16 autocast (the same labels here);
    on ONNX Runtime a precision other than fp32 is said to be ignored, without a probe."""
    from attnkit.train import precision

    fp32 = invoke(["predict", text_run, *TEXTS, "--json"])
    bf16 = invoke(["predict", text_run, *TEXTS, "--json", "--precision", "bf16"])
    assert fp32.code == bf16.code == 0, bf16.err
    labels = [json.loads(line)["label"] for line in fp32.out.splitlines()]
    assert [json.loads(line)["label"] for line in bf16.out.splitlines()] == labels
    assert "running in precision bf16" in bf16.err
    r = invoke(["predict", text_run, "good", "--precision", "nope"])
    assert r.kind == "clean_error" and "'nope' is not a precision" in r.err
    out = export_run(text_run, tmp_path / "onnx")
    monkeypatch.setattr(precision, "probe", lambda: pytest.fail("probed for a precision the engine ignores"))
    r = invoke(["predict", out, *TEXTS, "--precision", "auto"])
    assert r.code == 0 and "ignored, the onnxruntime engine runs the graph" in r.err
