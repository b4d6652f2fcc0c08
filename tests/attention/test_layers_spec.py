"""Modules and the spec: MultiHeadAttention against torch.nn.MultiheadAttention (an
independent implementation), pooling, grouped-query heads, YAML specs and bad input."""
import pytest
import torch
import yaml

from attnkit.attention import (
    Attention,
    AttentionPooling,
    AttentionSpec,
    MultiHeadAttention,
    causal,
    explain_dispatch,
    window,
)
from attnkit.errors import BackendError, ConfigError, ShapeError


def _copy_into_torch(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    theirs = torch.nn.MultiheadAttention(ours.embed_dim, ours.heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return theirs


@pytest.mark.parametrize("backend", ["auto", "chunked", "reference"])
def test_mha_matches_torch_multihead_attention(backend, device):
    ours = MultiHeadAttention(32, heads=4, backend=backend).to(device)
    theirs = _copy_into_torch(ours).to(device)
    x = torch.randn(3, 17, 32, device=device)
    keep = torch.ones(3, 17, dtype=torch.bool, device=device)
    keep[1, 12:] = False
    causal_bool = torch.ones(17, 17, dtype=torch.bool, device=device).triu(1)  # torch: True = masked
    out, w = ours(x, key_padding_mask=keep, mask=causal(), need_weights=True)
    ref, ref_w = theirs(x, x, x, key_padding_mask=~keep, attn_mask=causal_bool, average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-4)


def test_cross_attention_and_grouped_query_heads():
    mha = MultiHeadAttention(24, heads=6, kv_heads=2, kv_dim=10)
    x, ctx = torch.randn(2, 5, 24), torch.randn(2, 9, 10)
    out, w = mha(x, ctx, need_weights=True)
    assert out.shape == (2, 5, 24) and w.shape == (2, 6, 5, 9)
    ref = MultiHeadAttention(24, heads=6, kv_heads=2, kv_dim=10, backend="reference")
    ref.load_state_dict(mha.state_dict())
    torch.testing.assert_close(ref(x, ctx)[0], out, atol=1e-5, rtol=1e-4)


def test_single_head_attention_with_different_dims_and_lengths():
    att = Attention(6, 11, score="additive", hidden=7)
    q, k, v = torch.randn(2, 4, 6), torch.randn(2, 9, 11), torch.randn(2, 9, 3)
    out, w = att(q, k, v, lengths=torch.tensor([9, 2]), need_weights=True)
    assert out.shape == (2, 4, 3) and w.shape == (2, 4, 9)
    assert torch.all(w[1, :, 2:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(out, w @ v)


def test_attention_pooling_ignores_padding():
    pool = AttentionPooling(8, score="additive", heads=2, hidden=5)
    x = torch.randn(2, 6, 8)
    pooled, w = pool(x, lengths=torch.tensor([6, 3]), need_weights=True)
    assert pooled.shape == (2, 8) and w.shape == (2, 2, 6)
    x2 = x.clone()
    x2[1, 3:] = 100.0  # padded positions must not matter
    torch.testing.assert_close(pool(x2, lengths=torch.tensor([6, 3]))[0][1], pooled[1])
    pooled.sum().backward()
    assert pool.query.grad is not None and pool.score.v.weight.grad is not None


def test_spec_from_yaml_builds_the_documented_example():
    data = yaml.safe_load("{score: additive, mask: [causal, {window: 128}], mods: [alibi], heads: 8}")
    spec = AttentionSpec.from_dict(data)
    mha = spec.build(64)
    x = torch.randn(2, 10, 64)
    out, _ = mha(x)
    assert out.shape == x.shape
    d = explain_dispatch(mha, x)
    assert d.backend == "chunked" and "not a dot product" in str(d)


def test_dispatch_prefers_blocksparse_for_masked_dot_product_on_cpu():
    mha = MultiHeadAttention(16, heads=2, mask=[causal() & window(4)])
    d = explain_dispatch(mha, torch.randn(1, 8, 16))
    assert d.backend == "blocksparse"
    assert any(name == "sdpa" for name, _ in d.passed_over)
    plain = MultiHeadAttention(16, heads=2)
    assert explain_dispatch(plain, torch.randn(1, 8, 16)).backend == "sdpa"
    learned = MultiHeadAttention(16, heads=2, mods=["relative_bias"])
    d = explain_dispatch(learned, torch.randn(1, 8, 16))
    assert d.backend == "chunked" and "trainable" in str(d)
    with torch.no_grad():
        assert explain_dispatch(learned, torch.randn(1, 8, 16)).backend == "blocksparse"


@pytest.mark.parametrize("data,match", [
    ({"score": "addtive"}, r"attention.score: unknown score 'addtive'; known: additive"),
    ({"heads": -3}, r"attention.heads: must be an int > 0, got -3"),
    ({"heads": 4, "kv_heads": 3}, r"attention.kv_heads: must divide heads=4"),
    ({"mask": ["casual"]}, r"attention.mask\[0\]: unknown mask 'casual'; known: causal"),
    ({"mods": [{"alibii": 1}]}, r"attention.mods\[0\]: unknown modifier"),
    ({"backend": "fast"}, r"attention.backend: unknown 'fast'; known: auto, blocksparse"),
    ({"head": 2}, r"^attention: unknown key\(s\) 'head' \(did you mean 'heads'\?\); known: score, mask, mods, heads"),
    ({"dropout": 1.5}, r"attention.dropout: must be in \[0, 1\)"),
])
def test_spec_errors_name_the_key_and_allowed_values(data, match):
    with pytest.raises(ConfigError, match=match):
        AttentionSpec.from_dict(data)


def test_bad_tensors_raise_clear_errors():
    mha = MultiHeadAttention(8, heads=2)
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 8\], got \[2, 5\]"):
        mha(torch.randn(2, 5))
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 8\], got \[2, 5, 7\]"):
        mha(torch.randn(2, 5, 7))
    with pytest.raises(ShapeError, match=r"key_padding_mask: expected shape \[2, 5\]"):
        mha(torch.randn(2, 5, 8), key_padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"lengths: values must be in \[0, 5\]"):
        mha(torch.randn(2, 5, 8), lengths=torch.tensor([6, 1]))
    with pytest.raises(ShapeError, match="divisible by heads"):
        MultiHeadAttention(10, heads=3)
    from attnkit.attention import attend, build_score

    s = build_score("dot", 4, 4)
    with pytest.raises(ShapeError, match=r"query: expected rank 4 \[B, H, Lq, Dq\], got shape \[3, 4\]"):
        attend(torch.randn(3, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4), s)
    with pytest.raises(ShapeError, match="key length 3 != value length 5"):
        attend(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 5, 4), s)
    with pytest.raises(ShapeError, match="built for query dim 4"):
        attend(torch.randn(1, 1, 2, 6), torch.randn(1, 1, 3, 6), torch.randn(1, 1, 3, 6), s)
    with pytest.raises(BackendError, match="flex.*no backward on CPU"):
        attend(*(torch.randn(1, 1, 3, 4, requires_grad=True) for _ in range(3)), s, causal(), backend="flex")


def test_mask_of_wrong_shape_is_rejected():
    bad = lambda b, h, q, kv: torch.ones(3, 3, 3, dtype=torch.bool)
    att = Attention(4, mask=bad)
    expected = r"returned shape \[3, 3, 3\], which does not broadcast to \[B, H, Lq, Lk\] = \[1, 1, 5, 5\]"
    with pytest.raises(ShapeError, match=expected):
        att(torch.randn(1, 5, 4))


@pytest.mark.parametrize("kv_heads", [0, -2, 2.0, "2"])
def test_kv_heads_must_be_a_positive_int_dividing_heads(kv_heads):
    with pytest.raises(ConfigError, match=r"^attention\.kv_heads: must divide heads=4, got"):
        AttentionSpec(heads=4, kv_heads=kv_heads).validate()  # the default key path: "attention"


def test_spec_mask_and_mod_entries_by_name_or_one_key_mapping():
    from attnkit.attention.masks import MASKS

    AttentionSpec(mask=[{name: {} for name in MASKS.names()}], mods=[{"alibi": {}}]).validate()  # known names
    with pytest.raises(ConfigError, match=r"^attention\.mods\[0\]: unknown modifier"):
        AttentionSpec(mods=[{"alibi": {}, "softcap": 30}]).validate()  # a modifier entry names one modifier


def test_score_options_beside_a_module_or_function_are_an_error_not_dropped():
    def neg_l1(a, b):
        return -(a.unsqueeze(-2) - b.unsqueeze(-3)).abs().sum(-1)

    with pytest.raises(ConfigError, match=r"score options \(hidden\) apply to a registered score name, not to function"):
        Attention(8, score=neg_l1, hidden=16)
    with pytest.raises(ConfigError, match=r"score options \(activation, hidden\) apply"):
        AttentionPooling(8, score=neg_l1, hidden=16, activation="relu")
    assert Attention(8, score="mlp", hidden=16).score.hidden == 16
    assert AttentionPooling(8, score=neg_l1).score.name == "neg_l1"


def test_pooling_names_a_non_tensor_input_and_dispatch_is_unset_until_run():
    pool = AttentionPooling(8)
    assert pool.last_dispatch is None
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 8\], got list"):
        pool([[1.0] * 8])
    pool(torch.randn(2, 3, 8))
    assert pool.last_dispatch is not None and pool.last_dispatch.backend
