"""Fine-tuning methods: what trains, layer-wise decay, and one clear error per bad setting."""
import pytest
import torch

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.finetune import Adapter, apply_method
from attnkit.models import ModelConfig, count_parameters
from attnkit.tasks import build_model
from attnkit.finetune import FinetuneConfig
from attnkit.train.optim import OptimizerConfig, build_optimizer

from .conftest import tiny_config, transformers


def bert():
    torch.manual_seed(0)
    return transformers.BertModel(tiny_config())


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_trains_everything_and_freezing_stops_the_bottom():
    names = trainable_names(apply_method(bert(), FinetuneConfig()))
    assert any("embeddings" in n for n in names) and any("layer.0." in n for n in names)
    names = trainable_names(apply_method(bert(), FinetuneConfig(freeze_layers=2)))
    assert not any("embeddings" in n or ".layer.0." in n or ".layer.1." in n for n in names)
    assert any(".layer.2." in n for n in names)
    names = trainable_names(apply_method(bert(), FinetuneConfig(freeze_embeddings=True)))
    assert not any("embeddings" in n for n in names) and any(".layer.0." in n for n in names)


def test_bitfit_trains_biases_only():
    names = trainable_names(apply_method(bert(), FinetuneConfig(method="bitfit")))
    assert names and all(n.endswith(".bias") for n in names)


def test_adapter_starts_as_identity_and_trains_adapters_and_layernorms():
    m = bert()
    ids = torch.tensor([[2, 7, 8, 3]])
    before = m(input_ids=ids).last_hidden_state
    m = apply_method(m, FinetuneConfig(method="adapter", adapter_size=4))
    torch.testing.assert_close(m(input_ids=ids).last_hidden_state, before)
    names = trainable_names(m)
    assert names and all("adapter" in n or "LayerNorm" in n for n in names)
    assert sum(isinstance(x, Adapter) for x in m.modules()) == 2 * 3


def test_adapter_is_a_bottleneck_residual():
    a = Adapter(6, 2)
    torch.nn.init.normal_(a.up.weight)
    x = torch.randn(3, 6, dtype=torch.float64)
    a = a.double()
    ref = x + (torch.nn.functional.gelu(x @ a.down.weight.T + a.down.bias) @ a.up.weight.T + a.up.bias)
    torch.testing.assert_close(a(x), ref)


@pytest.mark.parametrize("method,share", [("lora", 0.2), ("ia3", 0.05), ("prefix", 0.5), ("prompt", 0.05)])
def test_peft_methods_train_a_small_share(method, share):
    m = apply_method(bert(), FinetuneConfig(method=method, r=2, virtual_tokens=2))
    trainable, total = count_parameters(m)
    assert 0 < trainable < share * total


def test_lora_options_reach_peft():
    m = apply_method(bert(), FinetuneConfig(method="lora", r=4, alpha=8, target_modules=["query", "key"]))
    cfg = m.peft_config["default"]
    assert cfg.r == 4 and cfg.lora_alpha == 8 and set(cfg.target_modules) == {"query", "key"}
    assert all(("query" in n or "key" in n) for n in trainable_names(m))


def test_unknown_target_module_lists_the_real_ones():
    with pytest.raises(ConfigError, match=r"no module named 'q_proj'.*linear layers are: .*query.*value"):
        apply_method(bert(), FinetuneConfig(method="lora", target_modules=["q_proj"]))


def test_unknown_method_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"finetune.method: unknown fine-tuning method 'loraa'; known: adapter, bitfit, full, ia3, lora"):
        from_dict(ModelConfig, {"pretrained": "x", "finetune": {"method": "loraa"}})


def test_bad_freeze_layers():
    with pytest.raises(ConfigError, match="freeze_layers: 9 > the backbone's 3 layers"):
        apply_method(bert(), FinetuneConfig(freeze_layers=9))


def test_layer_decay_gives_lower_layers_smaller_learning_rates(tiny_bert):
    cfg = from_dict(ModelConfig, {"pretrained": str(tiny_bert), "finetune": {"layer_decay": 0.5}})
    model = build_model("text_classification", cfg, num_classes=2)
    opt = build_optimizer(model, OptimizerConfig(name="adamw", lr=1.0))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.net.1.weight"])] == 1.0
    assert lr_of[id(named["encoder.model.encoder.layer.2.output.dense.weight"])] == 1.0
    assert lr_of[id(named["encoder.model.encoder.layer.0.output.dense.weight"])] == 0.25
    assert lr_of[id(named["encoder.model.embeddings.word_embeddings.weight"])] == 0.125
