"""Fine-tuned runs keep the run-directory contract: train, evaluate, predict through the CLI
and the API; a LoRA run saves only what trained; weights round-trip exactly."""
import json

import pytest
import torch
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.errors import ConfigError
from attnkit.run import load_run, train
from attnkit.run import predict

POS = ["good film", "great movie , fun", "a great plot", "good acting and fun", "great fun"]
NEG = ["bad film", "awful movie , boring", "a boring plot", "bad acting and awful", "awful"]


@pytest.fixture
def sentiment(tmp_path):
    rows = [f"{t}\t1" for t in POS] * 6 + [f"{t}\t0" for t in NEG] * 6
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows[::5]) + "\n")
    return tmp_path


def config(folder, data, method="lora", pooler=None, **finetune):
    # full fine-tuning at lr 0.01 stayed at chance on 4-6 of 20 seeds; at 0.003 learnt on 12 of 12
    lr = 0.003 if method == "full" else 0.01
    return {"task": "text_classification",
            "data": {"train": str(data / "train.tsv"), "dev": str(data / "dev.tsv")},
            "model": {"pretrained": str(folder), "finetune": {"method": method, **finetune}, "pooler": pooler or {}},
            "train": {"epochs": 8, "batch_size": 8, "optimizer": {"name": "adamw", "lr": lr}}}


# the random tiny backbone's [CLS] state hardly depends on the input, so methods that start
# as the identity (adapters) learn faster from a pooler over every position
@pytest.mark.parametrize("method,pooler", [("lora", None), ("full", None), ("adapter", {"type": "mean"}),
                                           ("lora", {"type": "attention", "score": "mlp"})])
def test_train_predict_and_reload(tiny_bert, sentiment, tmp_path, method, pooler):
    result = train(config(tiny_bert, sentiment, method, pooler), out=tmp_path / "run", progress=False)
    assert result.dev["accuracy"] >= 0.9
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    trainable, total = meta["parameters"]["trainable"], meta["parameters"]["total"]
    assert (trainable == total) == (method == "full")
    assert meta["weights"] == ("all" if method == "full" else "trained")
    run = load_run(tmp_path / "run")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    if method != "full":  # only what trained (and the head) is saved
        assert sum(v.numel() for v in saved.values()) == trainable
    for k, v in saved.items():  # save -> load round-trips exactly
        assert torch.equal(run.model.state_dict()[k], v)
    preds = predict(tmp_path / "run", ["great fun", "awful , boring"])
    assert [p["label"] for p in preds] == ["1", "0"]


def test_full_run_needs_no_backbone_to_load(tiny_bert, sentiment, tmp_path):
    train(config(tiny_bert, sentiment, "full"), out=tmp_path / "run", progress=False)
    cfg = (tmp_path / "run" / "config.yaml").read_text().replace(str(tiny_bert), str(tmp_path / "gone"))
    (tmp_path / "run" / "config.yaml").write_text(cfg)
    assert predict(tmp_path / "run", ["great fun"])[0]["label"] == "1"


def test_cli_train_evaluate_predict_on_a_lora_run(tiny_bert, sentiment, tmp_path):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(tiny_bert, sentiment)))
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(sentiment / "dev.tsv")])
    assert r.exit_code == 0 and "accuracy" in r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "run"), "great fun", "--json"])
    assert r.exit_code == 0 and json.loads(r.output.strip().splitlines()[-1])["label"] == "1"


def test_token_classification_run(tiny_bert, tmp_path):
    sent = "John -DOC- B-PER\nvisited -X- O\nunbelievable -X- O\nParis -X- B-LOC\n"
    sent2 = "Smith -X- B-PER\nwas -X- O\nin -X- O\nLondon -X- B-LOC\n"
    (tmp_path / "train.txt").write_text((sent + "\n" + sent2 + "\n") * 10)
    (tmp_path / "dev.txt").write_text(sent + "\n" + sent2)
    cfg = {"task": "token_classification",
           "data": {"train": str(tmp_path / "train.txt"), "dev": str(tmp_path / "dev.txt")},
           "model": {"pretrained": str(tiny_bert), "finetune": {"method": "full"}},
           "train": {"epochs": 10, "batch_size": 4, "metric": "f1", "optimizer": {"name": "adamw", "lr": 0.005}}}
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert result.dev["f1"] == 1.0
    out = predict(tmp_path / "run", ["John visited unbelievable Paris"])[0]
    assert out["tokens"] == ["John", "visited", "unbelievable", "Paris"]
    assert out["tags"] == ["B-PER", "O", "O", "B-LOC"]


def test_bad_target_module_fails_before_writing_a_run(tiny_bert, sentiment, tmp_path):
    with pytest.raises(ConfigError, match="no module named 'q_proj'.*query"):
        train(config(tiny_bert, sentiment, target_modules=["q_proj"]), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
