"""Merging LoRA into the backbone: same outputs, idempotent, and save -> load exact."""
import torch

from attnkit.config import from_dict
from attnkit.finetune import merge_lora
from attnkit.models import ModelConfig
from attnkit.tasks import build_model


def lora_model(folder):
    torch.manual_seed(0)
    cfg = from_dict(ModelConfig, {"pretrained": str(folder), "finetune": {"method": "lora", "r": 4}})
    model = build_model("text_classification", cfg, num_classes=3)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # trained LoRA weights are not zero
            torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def batch():
    return {"tokens": torch.tensor([[2, 7, 9, 12, 3], [2, 8, 3, 0, 0]]), "lengths": torch.tensor([5, 3])}


def test_merged_equals_unmerged_and_merging_twice_changes_nothing(tiny_bert):
    model = lora_model(tiny_bert)
    with torch.no_grad():
        before = model(batch())["logits"]
        assert merge_lora(model)
        after = model(batch())["logits"]
        assert not any("lora" in n for n, _ in model.named_parameters())
        state = {k: v.clone() for k, v in model.state_dict().items()}
        assert not merge_lora(model)
        again = model(batch())["logits"]
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert torch.equal(again, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_merged_weights_fold_the_low_rank_update(tiny_bert):
    model = lora_model(tiny_bert)
    q = model.encoder.base.encoder.layer[0].attention.self.query
    expected = q.base_layer.weight + q.scaling["default"] * q.lora_B["default"].weight @ q.lora_A["default"].weight
    expected = expected.detach().clone()
    merge_lora(model)
    torch.testing.assert_close(model.encoder.base.encoder.layer[0].attention.self.query.weight, expected)


def test_merge_run_writes_a_plain_run_with_the_same_predictions(tiny_bert, tmp_path):
    from attnkit.run import load_run, merge_run, train

    rows = [f"{t}\t1" for t in ["good film", "great fun"]] * 8 + [f"{t}\t0" for t in ["bad film", "awful"]] * 8
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    cfg = {"task": "text_classification", "data": {"train": str(tmp_path / "t.tsv"), "dev": str(tmp_path / "t.tsv")},
           "model": {"pretrained": str(tiny_bert), "finetune": {"method": "lora", "r": 4}},
           "train": {"epochs": 3, "batch_size": 8, "optimizer": {"name": "adamw", "lr": 0.01}}}
    train(cfg, out=tmp_path / "lora", progress=False)
    merge_run(tmp_path / "lora", tmp_path / "merged")
    a, b = load_run(tmp_path / "lora"), load_run(tmp_path / "merged")
    assert b.cfg.model.finetune.method == "full" and b.meta["weights"] == "all"
    assert not any("lora" in k for k in b.model.state_dict())
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(b.model(x)["logits"], a.model(x)["logits"], atol=1e-5, rtol=1e-5)
    lora_bytes = (tmp_path / "lora" / "model.safetensors").stat().st_size
    assert lora_bytes * 5 < (tmp_path / "merged" / "model.safetensors").stat().st_size
