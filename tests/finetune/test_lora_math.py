"""LoRA as attnkit builds it, checked against the formula written here from the raw tensors
(``W x + b + (alpha / r) B A x``), never through PEFT's own ``scaling``: each adapted Linear,
the fast encoder path end to end, gradients, and the merge ``W + (alpha / r) B A``."""
import pytest
import torch

from attnkit.config import from_dict
from attnkit.finetune import merge_lora
from attnkit.models import ModelConfig
from attnkit.tasks import build_model

from .conftest import transformers

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
CASES = [(4, 12.0, None, ["query", "value"]),  # attnkit's default targets
         (2, 5.0, ["query", "key", "output.dense"], ["query", "key", "attention.output.dense", "output.dense"])]


def lora_model(folder, r, alpha, targets):
    """A text classifier on the tiny BERT with LoRA (r, alpha), float64, A and B set to random
    values (B is zero at init, which would hide any scaling)."""
    torch.manual_seed(0)
    finetune = {"method": "lora", "r": r, "alpha": alpha, **({"target_modules": targets} if targets else {})}
    model = build_model("text_classification", from_dict(ModelConfig, {"pretrained": str(folder),
                                                                       "finetune": finetune}), num_classes=3)
    gen = torch.Generator().manual_seed(r)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.to(DT).eval()


def adapted(model, suffixes):
    """``{name: LoRA layer}`` for the Linears whose names end with one of ``suffixes``."""
    out = {n: m for n, m in model.encoder.base.named_modules()
           if hasattr(m, "lora_A") and hasattr(m, "base_layer") and any(n.endswith(s) for s in suffixes)}
    return out


def raw(layer):
    """``(W, b, A, B)``: the plain tensors inside a PEFT LoRA Linear."""
    return (layer.base_layer.weight.detach(), layer.base_layer.bias.detach(), layer.lora_A["default"].weight.detach(),
            layer.lora_B["default"].weight.detach())


@pytest.mark.parametrize("r,alpha,targets,suffixes", CASES)
def test_each_lora_linear_is_w_x_plus_alpha_over_r_b_a_x(tiny_bert, r, alpha, targets, suffixes):
    """Every adapted Linear computes x W^T + b + (alpha/r) x A^T B^T (inputs of several shapes);
    the gradients w.r.t. A and B are (alpha/r) B^T G^T x and (alpha/r) G^T x A^T."""
    model = lora_model(tiny_bert, r, alpha, targets)
    layers = adapted(model, [".attention.self." + s if s in ("query", "key", "value") else "." + s for s in suffixes])
    assert len(layers) == 3 * len(suffixes)  # 3 BERT layers
    s = alpha / r
    gen = torch.Generator().manual_seed(1)
    for i, (name, layer) in enumerate(layers.items()):
        W, b, A, B = raw(layer)
        assert A.shape == (r, W.shape[1]) and B.shape == (W.shape[0], r)
        x = torch.randn(*[(5,), (2, 3), (2, 4, 3)][i % 3], W.shape[1], generator=gen, dtype=DT)
        out = layer(x)
        torch.testing.assert_close(out, x @ W.T + b + s * (x @ A.T) @ B.T, **TOL, msg=name)
        G = torch.randn(out.shape, generator=gen, dtype=DT)
        gA, gB = torch.autograd.grad((out * G).sum(), [layer.lora_A["default"].weight, layer.lora_B["default"].weight])
        x2, G2 = x.reshape(-1, x.shape[-1]), G.reshape(-1, G.shape[-1])
        torch.testing.assert_close(gA, s * B.T @ G2.T @ x2, **TOL, msg=name)
        torch.testing.assert_close(gB, s * G2.T @ (x2 @ A.T), **TOL, msg=name)


def folded_bert(folder, model, r, alpha):
    """A fresh transformers BERT from ``folder`` whose adapted weights are replaced by
    W + (alpha/r) B A, computed here from the LoRA model's raw tensors."""
    bert = transformers.BertModel.from_pretrained(str(folder)).to(DT).eval()
    with torch.no_grad():
        for name, layer in adapted(model, [""]).items():
            W, b, A, B = raw(layer)
            target = bert.get_submodule(name)
            assert torch.equal(target.weight, W) and torch.equal(target.bias, b)  # same pretrained weights
            target.weight.copy_(W + (alpha / r) * B @ A)
    return bert


@pytest.mark.parametrize("r,alpha,targets,suffixes", CASES)
def test_fast_path_with_lora_equals_bert_with_the_folded_weights(tiny_bert, r, alpha, targets, suffixes):
    """attnkit's fast encoder path on the LoRA model == the plain Hugging Face BERT with
    W + (alpha/r) B A put in its weights (padded batch, real positions); also first_only."""
    model = lora_model(tiny_bert, r, alpha, targets)
    assert model.encoder.fast
    bert = folded_bert(tiny_bert, model, r, alpha)
    ids = torch.tensor([[2, 7, 9, 12, 14, 3], [2, 8, 10, 3, 0, 0], [2, 20, 3, 0, 0, 0]])
    lengths = torch.tensor([6, 4, 3])
    keep = torch.arange(6)[None, :] < lengths[:, None]
    with torch.no_grad():
        got = model.encoder(ids, lengths)
        first = model.encoder(ids, lengths, first_only=True)
        want = bert(input_ids=ids, attention_mask=keep.long()).last_hidden_state
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(first[:, 0], want[:, 0], rtol=1e-9, atol=1e-9)
    plain = transformers.BertModel.from_pretrained(str(tiny_bert)).to(DT).eval()
    with torch.no_grad():
        unadapted = plain(input_ids=ids, attention_mask=keep.long()).last_hidden_state
    assert (unadapted[keep] - want[keep]).abs().max() > 1e-3  # the LoRA update is not negligible


@pytest.mark.parametrize("r,alpha,targets,suffixes", CASES)
def test_merge_folds_w_plus_alpha_over_r_b_a(tiny_bert, r, alpha, targets, suffixes):
    """merge_lora leaves plain Linears with weight W + (alpha/r) B A and bias b, computed here
    from the raw tensors before merging, and the encoder output unchanged."""
    model = lora_model(tiny_bert, r, alpha, targets)
    expected = {}
    for name, layer in adapted(model, [""]).items():
        W, b, A, B = raw(layer)
        expected[name] = ((W + (alpha / r) * B @ A).clone(), b.clone())
    ids, lengths = torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]]), torch.tensor([4, 3])
    with torch.no_grad():
        before = model.encoder(ids, lengths)
    assert merge_lora(model)
    for name, (w, b) in expected.items():
        merged = model.encoder.base.get_submodule(name)
        assert type(merged) is torch.nn.Linear, name
        torch.testing.assert_close(merged.weight, w, **TOL, msg=name)
        torch.testing.assert_close(merged.bias, b, **TOL, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(ids, lengths), before, rtol=1e-9, atol=1e-9)
