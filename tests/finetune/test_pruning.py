"""Structured pruning: removing heads and neurons physically computes what the unpruned model
computes with those units' outputs zeroed (a reference written here with its own hooks); the
importance is the gate gradient (checked by finite differences); a pruned run saves, loads,
predicts and exports; misuse is one clear error."""
import copy
import json

import pytest
import torch

from attnkit.config import from_dict
from attnkit.deploy import export_run, prune_run
from attnkit.errors import AttnkitError, ConfigError, DeployError
from attnkit.finetune.pruning import count_units, importance, plan, prune
from attnkit.models import ModelConfig
from attnkit.run import load_run, predict, train
from attnkit.tasks import build_model


def classifier(folder, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = from_dict(ModelConfig, {"pretrained": str(folder), "finetune": {"method": "full"}})
    return build_model("text_classification", cfg, num_classes=3).to(dtype).eval()


def batches(n=2):
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        tokens = torch.randint(5, 30, (4, 9), generator=g)
        tokens[:, 0], lengths = 2, torch.tensor([9, 7, 5, 3])
        out.append({"tokens": tokens, "lengths": lengths, "labels": torch.randint(0, 3, (4,), generator=g)})
    return out


def zeroed(model, heads: dict, neurons: dict):
    """The unpruned model with the outputs of ``heads[layer]`` and ``neurons[layer]`` set to 0."""
    hooks = []
    for li, layer in enumerate(model.encoder.layers):
        d = layer.attention.self.attention_head_size

        def zero_heads(mod, args, li=li, d=d):
            x = args[0].clone()
            for h in heads.get(li, []):
                x[..., h * d:(h + 1) * d] = 0
            return (x,)

        def zero_neurons(mod, args, li=li):
            x = args[0].clone()
            x[..., neurons.get(li, [])] = 0
            return (x,)

        hooks += [layer.attention.output.dense.register_forward_pre_hook(zero_heads),
                  layer.output.dense.register_forward_pre_hook(zero_neurons)]
    return hooks


@pytest.mark.parametrize("fast", [True, False])
def test_pruned_model_equals_the_model_with_those_units_zeroed(tiny_bert, fast):
    model = classifier(tiny_bert)
    model.encoder.fast = fast
    removed_heads = {0: [1, 3], 2: [0]}
    removed_neurons = {1: [0, 5, 17, 63], 2: list(range(0, 64, 2))}
    kept = {"heads": {str(li): [h for h in range(4) if h not in removed_heads.get(li, [])] for li in range(3)},
            "ffn_keep": {str(li): [n for n in range(64) if n not in removed_neurons.get(li, [])] for li in range(3)}}
    hooks = zeroed(model, removed_heads, removed_neurons)
    with torch.no_grad():
        expected = [model(b)["logits"] for b in batches()]
    for h in hooks:
        h.remove()
    pruned = copy.deepcopy(model)
    prune(pruned, kept)
    assert count_units(pruned) == {"heads": 12 - 3, "ffn": 3 * 64 - 4 - 32}
    with torch.no_grad():
        for b, e in zip(batches(), expected):
            torch.testing.assert_close(pruned(b)["logits"], e, atol=1e-5, rtol=1e-5)


def test_importance_is_the_gate_gradient_by_finite_differences(tiny_bert):
    model = classifier(tiny_bert, torch.float64)
    bs = batches(1)
    scores = importance(model, bs, model.loss)
    layer = model.encoder.layers[1]
    d = layer.attention.self.attention_head_size
    grads = []
    for h in range(4):
        def loss_at(g):
            def hook(mod, args):
                x = args[0].clone()
                x[..., h * d:(h + 1) * d] *= g
                return (x,)
            handle = layer.attention.output.dense.register_forward_pre_hook(hook)
            with torch.no_grad():
                value = model.loss(model(bs[0]), bs[0]).item()
            handle.remove()
            return value
        eps = 1e-5
        grads.append(abs(loss_at(1 + eps) - loss_at(1 - eps)) / (2 * eps))
    grads = torch.tensor(grads, dtype=torch.float64)
    torch.testing.assert_close(scores["heads"][1].double(), grads / grads.norm(), atol=1e-4, rtol=1e-3)
    shown = importance(model, bs, model.loss, progress=True)  # with a progress bar: the same measurement
    assert all(torch.equal(a, b) for k in scores for a, b in zip(scores[k], shown[k]))


def test_plan_removes_the_least_important_and_keeps_one_per_layer():
    scores = {"heads": [torch.tensor([0.1, 0.9, 0.2]), torch.tensor([0.05, 0.01, 0.03])],
              "ffn": [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])]}
    kept = plan(scores, heads_fraction=0.5, ffn_fraction=0.0)
    # lowest first: 0.01 and 0.03 go, 0.05 is layer 1's last head and stays, then 0.1 goes
    assert kept["heads"] == {"0": [1, 2], "1": [0]}
    kept = plan(scores, heads_fraction=0.99, ffn_fraction=0.99)
    assert all(len(v) == 1 for v in kept["heads"].values()) and all(len(v) == 1 for v in kept["ffn_keep"].values())


def _train_tiny(tiny_bert, tmp_path, method="full"):
    rows = [f"{t}\t1" for t in ["good film", "great fun"]] * 8 + [f"{t}\t0" for t in ["bad film", "awful"]] * 8
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    ft = {"method": method, "r": 4} if method == "lora" else {"method": method}
    cfg = {"task": "text_classification", "data": {"train": str(tmp_path / "t.tsv"), "dev": str(tmp_path / "t.tsv")},
           "model": {"pretrained": str(tiny_bert), "finetune": ft},
           "train": {"epochs": 2, "batch_size": 8, "report": False, "optimizer": {"name": "adamw", "lr": 0.01}}}
    train(cfg, out=tmp_path / "run", progress=False)
    return tmp_path / "run"


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_pruned_run_saves_loads_predicts_and_exports(tiny_bert, tmp_path, method):
    run = _train_tiny(tiny_bert, tmp_path, method)
    out = prune_run(run, tmp_path / "pruned", heads=0.5, ffn=0.25, examples=16)
    loaded = load_run(out)
    assert loaded.meta["pruned"]["before"] == {"heads": 12, "ffn": 192}
    assert loaded.meta["pruned"]["after"] == count_units(loaded.model) == {"heads": 6, "ffn": 144}
    assert loaded.meta["parameters"]["total"] < load_run(run).meta["parameters"]["total"]
    texts = ["good film", "awful", "great fun and good"]
    preds = predict(out, texts)
    assert len(preds) == 3 and all(p["label"] in ("0", "1") for p in preds)
    pytest.importorskip("onnxruntime")
    exported = export_run(out, tmp_path / "onnx")
    assert [p["label"] for p in predict(exported, texts)] == [p["label"] for p in preds]


def test_a_pruned_run_reloads_as_the_original_with_those_heads_zeroed_and_explains(tiny_bert, tmp_path):
    """Saved and loaded again (``meta["pruned"]`` rebuilds the shapes), the pruned run computes
    what the original computes with the removed heads' outputs zeroed; its attention map and
    report draw the layers' differing head counts."""
    from attnkit.explain import explain
    from attnkit.finetune import merge_lora
    from attnkit.report import write_report

    run = _train_tiny(tiny_bert, tmp_path, "lora")
    out = prune_run(run, tmp_path / "pruned", heads=0.4, examples=16)  # 5 of 12 heads: 7 left over 3 layers
    loaded = load_run(out)
    kept = {int(li): h for li, h in loaded.meta["pruned"]["heads"].items()}
    assert sum(len(h) for h in kept.values()) == 7 and len({len(h) for h in kept.values()}) > 1
    original = load_run(run).model
    merge_lora(original)
    hooks = zeroed(original, {li: [h for h in range(4) if h not in k] for li, k in kept.items()}, {})
    batch = loaded.task.encode_inputs(loaded.featurized, ["good film", "awful but great fun"])
    from attnkit.tasks.prediction import stack_batches
    b = stack_batches([e.batch for e in batch])
    with torch.no_grad():
        expected = original(b)["logits"]
        torch.testing.assert_close(loaded.model(b)["logits"], expected, atol=1e-5, rtol=1e-5)
    for h in hooks:
        h.remove()
    e = explain(out, ["great fun"], method="attention")[0]
    assert e.attention["layers"].shape[:2] == (3, max(len(k) for k in kept.values()))
    assert sum(bool((~torch.isnan(torch.as_tensor(e.attention["layers"][li, :, 0, 0]))).sum() == len(k))
               for li, k in kept.items()) == 3
    assert "attention grid" in write_report(out).read_text()


def test_misuse_is_one_clear_error(tiny_bert, text_run, tmp_path):
    with pytest.raises(DeployError, match="applies to fine-tuned Transformer runs"):
        prune_run(text_run, tmp_path / "a", heads=0.5)
    with pytest.raises(ConfigError, match=r"--heads: the fraction to remove must be in \[0, 1\), got 1.5"):
        prune_run(text_run, tmp_path / "a", heads=1.5)
    with pytest.raises(ConfigError, match="say what to remove"):
        prune_run(text_run, tmp_path / "a", heads=0.0)
    assert not (tmp_path / "a").exists()


def test_the_prune_command_says_what_it_removed_and_refuses_cleanly(tiny_bert, tmp_path):
    from tests.fuzz.contract import invoke

    run = _train_tiny(tiny_bert, tmp_path)
    r = invoke(["prune", run, "--out", tmp_path / "p", "--heads", "0.25", "--ffn", "0.5", "--examples", "8"])
    assert r.code == 0, r.err
    assert "heads 12 -> 9, feed-forward neurons 192 -> 96; importance from 8 examples" in r.out
    assert load_run(tmp_path / "p").meta["pruned"]["after"] == {"heads": 9, "ffn": 96}
    r = invoke(["prune", run, "--out", tmp_path / "r", "--heads", "0.5", "--examples", "8", "--recover-epochs", "1"])
    assert r.code == 0, r.err
    rec = load_run(tmp_path / "r").meta["recovered"]
    assert (f"recovered: 1 epoch(s) of fine-tuning; dev accuracy {rec['dev_before']['accuracy']:.4f} -> "
            f"{rec['dev_after']['accuracy']:.4f}") in r.out
    r = invoke(["prune", run, "--out", tmp_path / "q", "--heads", "1"])
    assert r.kind == "clean_error" and r.code == 2 and "--heads: the fraction to remove must be in [0, 1)" in r.err
    assert not (tmp_path / "q").exists()


def test_recovery_fine_tunes_the_pruned_model_and_records_both_scores(tiny_bert, tmp_path):
    """``--recover-epochs``: the pruned shapes stay, the weights move away from the pruned-only
    run's, eval.json is the recovered model's own dev score (evaluated again here: its loss
    differs from the pruned-only model's), and the record keeps the score before recovery."""
    from attnkit.run import evaluate
    from attnkit.run.pruning import prune as prune_and_recover

    run = _train_tiny(tiny_bert, tmp_path)
    plain = prune_run(run, tmp_path / "plain", heads=0.5, ffn=0.5, examples=16)
    out = prune_and_recover(run, tmp_path / "recovered", heads=0.5, ffn=0.5, examples=16, recover_epochs=2,
                            overrides=["train.optimizer.lr=0.003"], progress=False)
    rec, plain_run, done = load_run(out).meta["recovered"], load_run(plain), load_run(out)
    assert count_units(done.model) == count_units(plain_run.model) == {"heads": 6, "ffn": 96}
    assert done.meta["pruned"]["heads"] == plain_run.meta["pruned"]["heads"]  # the same units removed
    moved = [n for (n, a), b in zip(done.model.state_dict().items(), plain_run.model.state_dict().values())
             if a.is_floating_point() and not torch.equal(a, b)]
    assert len(moved) > 10
    assert rec["epochs"] == 2 and rec["overrides"] == ["train.optimizer.lr=0.003"] and rec["metric"] == "accuracy"
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    again, before = evaluate(out, tmp_path / "t.tsv"), evaluate(plain, tmp_path / "t.tsv")
    saved = json.loads((out / "eval.json").read_text())
    assert saved["dev"]["loss"] == pytest.approx(again["loss"]) == pytest.approx(rec["dev_after"]["loss"])
    assert rec["dev_before"]["loss"] == pytest.approx(before["loss"]) != pytest.approx(again["loss"])
    assert saved["best_epoch"] in (1, 2) and saved["weights"] == "pruned, then fine-tuned 2 epoch(s)"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the scratch training is gone


def test_recovery_misuse_is_one_clear_error_before_any_pruning(tiny_bert, tmp_path, monkeypatch):
    from attnkit.run import pruning

    run = _train_tiny(tiny_bert, tmp_path)
    (tmp_path / "l").mkdir()
    lora = _train_tiny(tiny_bert, tmp_path / "l", "lora")

    def no_pruning(*a, **kw):
        raise AssertionError("pruned before the arguments were checked")
    monkeypatch.setattr(pruning, "prune_run", no_pruning)
    cases = [(run, -1, [], "--recover-epochs: must be 0"),
             (run, 0, ["train.optimizer.lr=0.1"], "give --recover-epochs N with it"),
             (run, 1, ["train.nonsense=1"], r"train: unknown key\(s\) 'nonsense'"),
             (run, 1, ["model.dropout=0.2"], r"--set model.dropout=0.2: the recovery fine-tuning takes train\.\*"),
             (run, 1, ["train.epochs=3"], "the recovery's epochs are --recover-epochs"),
             (lora, 1, [], r"a lora run's learning rate \(0.01\) was its adapters'.*--set train.optimizer.lr=RATE")]
    for source, epochs, overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            pruning.prune(source, tmp_path / "a", heads=0.5, recover_epochs=epochs, overrides=overrides)
    (tmp_path / "t.tsv").rename(tmp_path / "moved.tsv")  # the training data, gone since the run
    with pytest.raises(AttnkitError, match="t.tsv"):
        pruning.prune(run, tmp_path / "a", heads=0.5, recover_epochs=1)
    assert not (tmp_path / "a").exists()
