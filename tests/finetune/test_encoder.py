"""The fast encoder path against transformers' own forward (the reference): outputs and
gradients, with padding, for every method that keeps the fast path."""
import pytest
import torch

from attnkit.finetune import BackboneEncoder, apply_method
from attnkit.finetune import FinetuneConfig

from .conftest import tiny_config, transformers


def make(method: str, dropout: float = 0.0, **kw):
    torch.manual_seed(0)
    model = transformers.BertModel(tiny_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))
    model = apply_method(model, FinetuneConfig(method=method, **kw))
    for name, p in model.named_parameters():  # LoRA B and adapter up start at zero: make them act
        if "lora_B" in name or "adapter.up" in name or "ia3" in name:
            torch.nn.init.normal_(p, std=0.2)
    return model


def batch(B=3, T=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 30, (B, T), generator=g)
    lengths = torch.tensor([T, T - 2, 2][:B])
    ids[:, 0] = 2
    return ids, lengths


@pytest.mark.parametrize("method", ["full", "lora", "ia3", "adapter", "bitfit"])
@pytest.mark.parametrize("shape", [(3, 7), (1, 5), (2, 12)])
def test_fast_path_matches_transformers_forward_and_gradients(method, shape):
    model = make(method)
    enc = BackboneEncoder(model, fast=True, sparse_embeddings=False)
    assert enc.fast
    ids, lengths = batch(*shape)
    lengths = lengths[:shape[0]].clamp(max=shape[1])
    enc.train()
    fast = enc(ids, lengths)
    ref = enc.reference(ids, lengths)
    real = torch.arange(ids.shape[1]) < lengths[:, None]
    torch.testing.assert_close(fast[real], ref[real], atol=2e-5, rtol=1e-4)
    # gradients of the same loss through both paths, on every trainable parameter
    w = torch.randn_like(fast)
    params = [p for p in enc.parameters() if p.requires_grad]
    g_fast = torch.autograd.grad((fast[real] * w[real]).sum(), params, allow_unused=True)
    g_ref = torch.autograd.grad((enc.reference(ids, lengths)[real] * w[real]).sum(), params, allow_unused=True)
    used = 0
    for a, b in zip(g_fast, g_ref):
        assert (a is None) == (b is None)  # the pooler: used by neither path
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
            used += 1
    assert used >= len(params) - 2


@pytest.mark.parametrize("method", ["full", "lora"])
def test_first_only_last_layer_equals_the_first_position(method):
    model = make(method)
    enc = BackboneEncoder(model).eval()
    ids, lengths = batch()
    with torch.no_grad():
        torch.testing.assert_close(enc(ids, lengths, first_only=True)[:, 0], enc.reference(ids, lengths)[:, 0],
                                   atol=2e-5, rtol=1e-4)


def test_sparse_embedding_gradient_equals_dense():
    model = make("full")
    ids, lengths = batch()
    grads = []
    for sparse in (True, False):
        enc = BackboneEncoder(model, sparse_embeddings=sparse).train()
        model.zero_grad()
        enc(ids, lengths).pow(2).sum().backward()
        g = model.embeddings.word_embeddings.weight.grad
        assert g.is_sparse == sparse
        grads.append(g.to_dense())
    torch.testing.assert_close(grads[0], grads[1])


def test_prompt_methods_use_the_reference_path():
    for method in ("prefix", "prompt"):
        enc = BackboneEncoder(make(method, virtual_tokens=3))
        assert not enc.fast
        ids, lengths = batch()
        assert enc(ids, lengths).shape == (3, 7, 32)


def test_non_bert_models_fall_back():
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(vocab_size=40, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    enc = BackboneEncoder(transformers.DistilBertModel(cfg))
    assert not enc.fast
    ids, lengths = batch()
    h = enc(ids, lengths)
    assert h.shape == (3, 7, 32) and torch.isfinite(h).all()


def test_hidden_dropouts_draw_with_attnkits_dropout(dropout_draws):
    enc = BackboneEncoder(make("full", dropout=0.1)).train()
    enc(*batch())
    assert dropout_draws == [0.1] * (1 + 2 * len(enc.layers))  # the embeddings', then two per layer
    dropout_draws.clear()
    enc.eval()(*batch())
    assert dropout_draws == []
