"""A LoRA run trained and served under bf16 holds its frozen backbone matrices in bf16 during
the steps (attnkit.train.bf16_weights) and leaves them bit for bit as they were."""
import torch
from safetensors.torch import load_file
from torch import nn

from attnkit.finetune import BackboneEncoder
from attnkit.finetune.merge import merge_lora
from attnkit.tasks.prediction import stack_batches
from attnkit.rundir import load_run
from attnkit.run import predict, train
from attnkit.train.precision import PrecisionChoice

POS = ["good film", "great movie , fun", "a great plot", "good acting and fun", "great fun"]
NEG = ["bad film", "awful movie , boring", "a boring plot", "bad acting and awful", "awful"]


def logits(run, precision, texts):
    """The network's raw output for ``texts`` under ``precision``'s context for the model."""
    batch = stack_batches([e.batch for e in run.task.encode_inputs(run.featurized, texts)])
    with torch.inference_mode(), precision.autocast(run.model):
        return run.model(batch)["logits"]


class PlainAutocast(PrecisionChoice):
    """bf16 autocast alone, nothing held: the reference."""

    def autocast(self, model=None):
        return torch.autocast("cpu", dtype=torch.bfloat16)


def write_data(folder):
    rows = [f"{t}\t1" for t in POS] * 4 + [f"{t}\t0" for t in NEG] * 4
    (folder / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows[::4]) + "\n")


def test_declared_weights_are_the_layers_linears(tiny_bert):
    from transformers import BertModel

    fast = BackboneEncoder(BertModel.from_pretrained(str(tiny_bert)))
    linears = [m for layer in fast.layers for m in layer.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 * len(fast.layers)  # query, key, value, output, intermediate, output
    linears.append(fast.base.pooler.dense)
    assert [id(w) for w in fast.bf16_safe_weights()] == [id(m.weight) for m in linears]
    assert BackboneEncoder(BertModel.from_pretrained(str(tiny_bert)), fast=False).bf16_safe_weights() == []


def test_lora_run_in_bf16_holds_the_frozen_base_in_bf16_and_keeps_it_exact(tiny_bert, tmp_path):
    write_data(tmp_path)
    cfg = {"task": "text_classification",
           "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
           "model": {"pretrained": str(tiny_bert), "finetune": {"method": "lora", "r": 4}},
           "train": {"epochs": 2, "batch_size": 8, "precision": "bf16", "checkpoint_every": 1}}
    seen = set()
    original = nn.Linear.forward

    def spy(self, x):
        # frozen, in a training step (not in the run's fp32 evaluation and explanations after it)
        if not self.weight.requires_grad and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu"):
            seen.add(self.weight.dtype)
        return original(self, x)
    nn.Linear.forward = spy
    try:
        train(cfg, out=tmp_path / "run", progress=False)
    finally:
        nn.Linear.forward = original
    assert seen == {torch.bfloat16}
    from transformers import BertModel

    base = BertModel.from_pretrained(str(tiny_bert)).state_dict()
    run = load_run(tmp_path / "run")
    encoder = next(m for m in run.model.modules() if isinstance(m, BackboneEncoder))
    for name, p in encoder.base.named_parameters():
        if not p.requires_grad and p.dim() == 2 and "embeddings" not in name:
            key = name.replace(".base_layer", "")
            assert p.dtype == torch.float32 and torch.equal(p, base[key]), name
    for name, t in load_file(str(tmp_path / "run" / "model.safetensors")).items():
        assert t.dtype == torch.float32, name
    held, plain = PrecisionChoice("bf16", "test"), PlainAutocast("bf16", "test")
    texts = POS + NEG
    assert torch.equal(logits(run, held, texts), logits(run, plain, texts))  # copies made here
    assert merge_lora(run.model)  # PEFT adds B A through .data: the copies must be remade
    assert torch.equal(logits(run, held, texts), logits(run, plain, texts))


def test_prediction_in_bf16_equals_plain_autocast(tiny_bert, tmp_path):
    write_data(tmp_path)
    cfg = {"task": "text_classification",
           "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
           "model": {"pretrained": str(tiny_bert), "finetune": {"method": "full"}},
           "train": {"epochs": 1, "batch_size": 8}}
    train(cfg, out=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    texts = POS + NEG
    encoder = next(m for m in run.model.modules() if isinstance(m, BackboneEncoder))
    dtypes = []
    encoder.layers[0].attention.self.query.register_forward_pre_hook(lambda m, args: dtypes.append(m.weight.dtype))
    held = predict(run, texts, precision=PrecisionChoice("bf16", "test"))
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert held == predict(run, texts, precision=PlainAutocast("bf16", "test"))
    bf16 = logits(run, PrecisionChoice("bf16", "test"), texts)
    assert torch.equal(bf16, logits(run, PlainAutocast("bf16", "test"), texts))  # bit for bit
    assert not torch.equal(bf16, logits(run, PrecisionChoice("fp32", "test"), texts))  # bf16 is in effect
