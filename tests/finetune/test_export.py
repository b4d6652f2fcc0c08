"""A fine-tuned backbone exported: LoRA merged first, the graph run by ONNX Runtime at new
batch sizes and lengths equals the LoRA run's own PyTorch model; int8 keeps the answers."""
import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="needs the deploy extra: pip install 'attnkit[deploy]'")

from attnkit.deploy import compress_run, export_run, read_engine  # noqa: E402
from attnkit.deploy.graph import sample_batch  # noqa: E402
from attnkit.run import load_run, predict, train  # noqa: E402


@pytest.mark.parametrize("method,pooler", [("lora", None), ("full", {"type": "attention"})])
def test_fine_tuned_runs_export_with_their_adapters_merged(tiny_bert, tmp_path, method, pooler):
    rows = [f"{t}\t1" for t in ["good film", "great fun"]] * 8 + [f"{t}\t0" for t in ["bad film", "awful"]] * 8
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    model = {"pretrained": str(tiny_bert), "finetune": {"method": method, "r": 4} if method == "lora" else {}}
    if pooler:
        model["pooler"] = pooler
    cfg = {"task": "text_classification", "data": {"train": str(tmp_path / "t.tsv"), "dev": str(tmp_path / "t.tsv")},
           "model": model, "train": {"epochs": 2, "batch_size": 8, "report": False,
                                     "optimizer": {"name": "adamw", "lr": 0.01}}}
    train(cfg, out=tmp_path / "run", progress=False)
    out = export_run(tmp_path / "run", tmp_path / "onnx")
    exported = load_run(out)
    assert exported.cfg.model.finetune.method == "full" and exported.meta["weights"] == "all"
    original = load_run(tmp_path / "run")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for examples, size in ((1, 3), (5, 11), (3, 30)):
        batch = sample_batch(original, examples, size)
        with torch.no_grad():
            ref = original.model(dict(batch))["logits"].numpy()
        got = session.run(["logits"], {i.name: batch[i.name].numpy() for i in session.get_inputs()})[0]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    texts = ["good film", "awful plot", "the acting was great fun"]
    assert [p["label"] for p in predict(out, texts)] == [p["label"] for p in predict(tmp_path / "run", texts)]
    int8 = compress_run(out, tmp_path / "int8")
    assert read_engine(int8)["variant"] == "int8"
    # a 32-wide toy: the graph's bookkeeping is much of the file; the wide BiLSTM test holds the 3x bound
    assert (int8 / "model.int8.onnx").stat().st_size < 0.85 * (out / "model.onnx").stat().st_size  # measured 0.80
