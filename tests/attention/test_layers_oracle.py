"""The attention modules' whole surface against the independent oracle: every runtime input
(lengths, key_padding_mask, segment_ids, extra masks), options that reach the score, the
modifiers and the backend, defaults, and the spec/mask builders' data paths."""
import math

import pytest
import torch

from attnkit.attention import (
    ALiBi,
    Attention,
    AttentionPooling,
    AttentionSpec,
    MultiHeadAttention,
    causal,
    explain_dispatch,
    key_padding,
)
from attnkit.attention.masks import build_mask, evaluate_mask
from attnkit.attention.scores import AdditiveScore, DotScore
from attnkit.errors import ConfigError, ShapeError

from .oracle import oracle_attention, truth_table


def _heads(t, heads):
    b, n, e = t.shape
    return t.view(b, n, heads, e // heads).transpose(1, 2)


def test_single_head_attention_honours_score_options_mods_backend_and_every_runtime_mask():
    b, lq, lk, dq, dk, dv = 2, 6, 9, 5, 4, 3
    att = Attention(dq, dk, score="additive", hidden=7, mods=[ALiBi(1)], backend="chunked").double()
    assert isinstance(att.score, AdditiveScore) and att.score.w_q.out_features == 7
    q, k, v = torch.randn(b, lq, dq).double(), torch.randn(b, lk, dk).double(), torch.randn(b, lk, dv).double()
    keep = torch.rand(b, lk) > 0.3
    keep[:, 0] = True
    seg_q, seg_k = torch.randint(0, 2, (b, lq)), torch.randint(0, 2, (b, lk))
    seg_k[:, 0] = seg_q[:, 0]
    extra = lambda b_, h, qi, kv: (qi + kv) % 4 != 1
    out, w = att(q, k, v, key_padding_mask=keep, lengths=torch.tensor([lk, 6]), segment_ids=(seg_q, seg_k),
                 mask=extra, need_weights=True)
    assert att.last_dispatch.backend == "chunked" and len(att.mods) == 1
    forced = Attention(dq, dq, score="dot", mods=ALiBi(1), backend="reference")
    assert len(forced.mods) == 1
    forced(torch.randn(1, 3, dq))
    assert forced.last_dispatch.backend == "reference"
    lens = [lk, 6]
    allowed = truth_table(lambda x, i, j: bool(keep[x, j]) and j < lens[x] and int(seg_q[x, i]) == int(seg_k[x, j])
                          and (i + j) % 4 != 1, b, lq, lk)
    want = oracle_attention(q[:, None], k[:, None], v[:, None], att.score, allowed, list(att.mods))
    torch.testing.assert_close(out, want.out[:, 0])
    torch.testing.assert_close(w, want.weights[:, 0])
    assert att(q, k, v)[1] is None, "weights only when asked"


def test_single_head_attention_errors_name_the_argument():
    att = Attention(4, 4)
    for name, args in (("query", ([1, 2],)), ("key", (torch.randn(1, 3, 4), torch.randn(3, 4))),
                       ("value", (torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(3, 4)))):
        with pytest.raises(ShapeError, match=rf"^{name}: expected rank 3 \[B, L, D\]"):
            att(*args)
    # the padding mask is checked against the key *length* (here 3), not its width (4)
    with pytest.raises(ShapeError, match=r"key_padding_mask: expected shape \[1, 3\]"):
        att(torch.randn(1, 2, 4), torch.randn(1, 3, 4), key_padding_mask=torch.ones(1, 4, dtype=torch.bool))
    out, _ = att(torch.randn(1, 2, 4), torch.randn(1, 3, 4), key_padding_mask=torch.ones(1, 3, dtype=torch.bool))
    assert out.shape == (1, 2, 4)


def test_multihead_attention_segments_and_masks_against_the_oracle():
    b, n, e, heads = 2, 11, 12, 3
    mha = MultiHeadAttention(e, heads=heads, mods=["alibi"]).double()
    x = torch.randn(b, n, e).double()
    seg = torch.tensor([[0] * 4 + [1] * 7, [0] * 8 + [1] * 3])
    out, w = mha(x, segment_ids=seg, mask=causal(), need_weights=True)
    allowed = truth_table(lambda r, i, j: int(seg[r, i]) == int(seg[r, j]) and j <= i, b, n, n)
    q, k, v = (_heads(p(x), heads) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
    want = oracle_attention(q, k, v, mha.score, allowed, list(mha.mods))
    torch.testing.assert_close(w, want.weights)
    torch.testing.assert_close(out, mha.out_proj(want.out.transpose(1, 2).reshape(b, n, e)))
    assert mha(x)[1] is None, "weights only when asked"


def test_attention_pooling_defaults_options_and_padding_mask():
    pool = AttentionPooling(8)
    assert isinstance(pool.score, AdditiveScore) and pool.heads == 1
    pool = AttentionPooling(8, score="additive", heads=2, mods=[ALiBi(2)], backend="reference", hidden=5).double()
    assert pool.score.w_q.out_features == 5 and pool.heads == 2 and pool.spec.heads == 2 and len(pool.mods) == 1
    x = torch.randn(3, 7, 8).double()
    keep = torch.ones(3, 7, dtype=torch.bool)
    keep[1, 4:] = False
    keep[2, ::2] = False
    pooled, w = pool(x, key_padding_mask=keep, need_weights=True)
    assert pool.last_dispatch.backend == "reference"
    kv = _heads(x, 2)
    q = pool.query.unsqueeze(0).expand(3, -1, -1, -1)
    want = oracle_attention(q, kv, kv, pool.score, truth_table(lambda r, i, j: bool(keep[r, j]), 3, 1, 7),
                            list(pool.mods))
    torch.testing.assert_close(pooled, want.out.reshape(3, 8))
    torch.testing.assert_close(w, want.weights[:, :, 0])
    assert pool(x)[1] is None, "weights only when asked"


def test_attention_pooling_query_follows_the_input_dtype():
    """A float32 module pools a float64 input in float64 (the learned query is cast)."""
    pool = AttentionPooling(6, score="dot", heads=2)
    assert isinstance(pool.score, DotScore)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    pooled, _ = pool(x)
    kv = _heads(x, 2)
    q = pool.query.double().unsqueeze(0).expand(2, -1, -1, -1)
    torch.testing.assert_close(pooled, oracle_attention(q, kv, kv, pool.score).out.reshape(2, 6))


def test_attention_pooling_query_init_scale_and_bad_sizes():
    """The learned query starts at N(0, 1/head_dim): scores of unit-variance inputs start
    with unit variance (neither saturated nor flat)."""
    torch.manual_seed(1)
    std = AttentionPooling(1024, score="dot").query.std().item()
    assert abs(std - 1 / math.sqrt(1024)) < 0.1 / math.sqrt(1024)
    assert AttentionPooling(1).dim == 1  # the smallest legal size
    for dim, heads in ((0, 1), (10, 3)):
        with pytest.raises(ShapeError, match=r"dim \(\d+\) must be > 0 and divisible by heads"):
            AttentionPooling(dim, heads=heads)
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 8\], got \[2, 5, 9\]"):
        AttentionPooling(8)(torch.randn(2, 5, 9))


def test_explain_dispatch_sees_runtime_masks_and_forced_backends():
    x = torch.randn(2, 8, 16)
    mha = MultiHeadAttention(16, heads=2)
    assert explain_dispatch(mha, x).backend == "sdpa"
    assert explain_dispatch(mha, x, lengths=torch.tensor([8, 3])).backend == "blocksparse"
    forced = MultiHeadAttention(16, heads=2, backend="chunked")
    d = explain_dispatch(forced, x)
    assert (d.backend, d.reason) == ("chunked", "forced")


def test_dispatch_text_lists_the_choice_then_each_backend_passed_over():
    d = explain_dispatch(MultiHeadAttention(16, heads=2, mask=[causal()], mods=["softcap"]), torch.randn(1, 8, 16))
    lines = str(d).split("\n")
    assert lines[0] == f"backend: {d.backend} ({d.reason})"
    assert lines[1:] == [f"  not {name}: {why}" for name, why in d.passed_over] and len(lines) > 2


def _table(mask, b=2, h=2, lq=7, lk=9):
    return evaluate_mask(mask, b, h, (0, lq), (0, lk), "cpu").expand(b, h, lq, lk)


def test_inverted_masks_pass_every_index_through():
    lens = torch.tensor([3, 6])
    got = _table(~key_padding(lengths=lens))
    want = truth_table(lambda r, i, j: not j < int(lens[r]), 2, 7, 9).expand(2, 2, 7, 9)
    assert torch.equal(got, want)
    by_head = lambda b_, h, q, kv: (h + q + kv) % 2 == 0
    m = build_mask(by_head)
    inv = ~m
    assert inv.name == f"~{m.name}"
    assert torch.equal(_table(inv), ~_table(m))


def test_build_mask_data_paths():
    spec = build_mask({"prefix_lm": {"prefix": 4}})
    assert torch.equal(_table(spec)[0, 0], truth_table(lambda r, i, j: j <= i or j < 4, 1, 7, 9)[0, 0])
    assert torch.equal(_table(build_mask({"window": 2}))[0, 0],
                       truth_table(lambda r, i, j: abs(i - j) <= 2, 1, 7, 9)[0, 0])
    with pytest.raises(ConfigError, match=r"^encoder.mask\[0\]: unknown mask 'casual'"):
        build_mask("casual", "encoder.mask[0]")
    with pytest.raises(ConfigError, match=r"^encoder.mask\[0\]: unknown mask 'windw'"):
        build_mask({"windw": 3}, "encoder.mask[0]")
    with pytest.raises(ConfigError, match=r"^mask: unknown mask 'casual'"):
        build_mask("casual")
    for bad in (5, {}, ["causal"], {"causal": None, "window": 2}):
        with pytest.raises(ConfigError, match=r"expected a mask name, a one-key mapping"):
            build_mask(bad)


def test_spec_to_dict_round_trips_and_build_passes_the_context_dim():
    spec = AttentionSpec.from_dict({"score": {"name": "mlp", "hidden": 6}, "mask": ["causal"], "mods": ["alibi"],
                                    "heads": 2, "kv_heads": 1, "dropout": 0.1, "backend": "chunked"})
    d = spec.to_dict()
    assert d == {"score": {"name": "mlp", "hidden": 6}, "mask": ["causal"], "mods": ["alibi"], "heads": 2,
                 "kv_heads": 1, "dropout": 0.1, "backend": "chunked"}
    assert AttentionSpec.from_dict(d) == spec
    mha = spec.build(8, kv_dim=5)
    assert mha.k_proj.in_features == 5 and mha.v_proj.in_features == 5 and mha.q_proj.in_features == 8


def test_runtime_masks_accept_legal_edges_and_refuse_bad_values():
    att = Attention(4)
    x = torch.randn(2, 5, 4)
    out, w = att(x, lengths=torch.tensor([0, 5]), need_weights=True)  # a row of length 0 is legal
    assert torch.all(w[0] == 0) and torch.all(out[0] == 0)
    with pytest.raises(ShapeError, match=r"lengths: values must be in \[0, 5\], got \[-1, 5\]"):
        att(x, lengths=torch.tensor([-1, 5]))
    with pytest.raises(ShapeError, match=r"lengths: values must be in \[0, 5\], got \[5.5, 5.5\]"):
        att(x, lengths=torch.tensor([5.5, 5.5]))  # past the keys, though whole numbers would cover them
    with pytest.raises(ShapeError, match=r"lengths: expected a tensor of shape \[2\]"):
        att(x, lengths=[5, 5])
    with pytest.raises(ShapeError, match=r"key_padding_mask: expected a bool tensor \[B, Lk\], got list"):
        att(x, key_padding_mask=[[True] * 5] * 2)
    with pytest.raises(ShapeError, match=r"key_padding_mask: expected a bool tensor \[B, Lk\], got torch.int64"):
        att(x, key_padding_mask=torch.ones(2, 5, dtype=torch.long))


def test_multihead_defaults_and_context_checks():
    mha = MultiHeadAttention(6)
    assert mha.heads == 1 and mha.k_proj.bias is not None and mha(torch.randn(1, 3, 6))[1] is None
    assert MultiHeadAttention(1).head_dim == 1  # the smallest legal size
    assert MultiHeadAttention(6, bias=False).k_proj.bias is None
    with pytest.raises(ShapeError, match=r"embed_dim \(0\) must be > 0"):
        MultiHeadAttention(0)
    mha = MultiHeadAttention(8, heads=2, kv_dim=5)
    x = torch.randn(2, 3, 8)
    for bad in (torch.randn(3, 4, 5), torch.randn(2, 4, 6), torch.randn(2, 4)):
        with pytest.raises(ShapeError, match=r"context: expected \[2, Lk, 5\]"):
            mha(x, bad)
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 8\], got list"):
        mha([1.0])


def test_single_tensor_segment_ids_serve_queries_and_keys():
    mha = MultiHeadAttention(8, heads=2).double()
    x = torch.randn(2, 6, 8).double()
    seg = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1]])
    _, w = mha(x, segment_ids=seg, need_weights=True)
    allowed = truth_table(lambda r, i, j: int(seg[r, i]) == int(seg[r, j]), 2, 6, 6).expand(2, 2, 6, 6)
    assert torch.all(w[~allowed] == 0) and torch.all(w[allowed] > 0)
