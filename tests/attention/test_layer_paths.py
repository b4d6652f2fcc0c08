"""Paths through the attention modules that the numerical suites did not reach (found by
mutation testing, docs/contributing.md): the cached keys/values of incremental decoding,
padding given only as a mask, ``explain_dispatch`` on a self-attention call, the names in
dtype errors, the bias cache's size limit."""
import pytest
import torch

from attnkit.attention import Attention, AttentionPooling, AttentionSpec, MultiHeadAttention, explain_dispatch
from attnkit.attention.mods import ALiBi
from attnkit.attention.backends import base
from attnkit.errors import ConfigError, ShapeError


@pytest.mark.parametrize("padding", ["lengths", "mask"])
def test_cached_keys_and_values_give_what_projecting_the_context_gives(padding):
    """``forward(x, kv=project_kv(context))`` (a decoder's cache) with padding and segment ids
    equals ``forward(x, context)``: the padding and segments reach the cached path's masks."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, heads=4, kv_dim=12).eval()
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    lengths = torch.tensor([7, 4])
    pad = {"lengths": lengths} if padding == "lengths" else {"key_padding_mask": torch.arange(7) < lengths[:, None]}
    segments = (torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]), torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]]))
    want, want_w = mha(x, context, segment_ids=segments, need_weights=True, **pad)
    got, got_w = mha(x, kv=mha.project_kv(context), segment_ids=segments, need_weights=True, **pad)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_w, want_w)
    assert float(got_w[1, :, :, 4:].abs().max()) == 0.0  # padded keys get no weight
    assert float(got_w[0, :, :2, 3:].abs().max()) == 0.0  # nor keys of another segment
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 16\], got \[2, 5, 15\]"):
        mha(torch.randn(2, 5, 15), kv=mha.project_kv(context))


def test_padding_given_only_as_a_mask_keeps_nan_in_padding_out_of_the_output():
    torch.manual_seed(0)
    att = Attention(score="additive", q_dim=8, k_dim=8, hidden=8).eval()
    q, k = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    clean, _ = att(q, k, key_padding_mask=keep)
    k[1, 4:] = float("nan")
    out, _ = att(q, k, key_padding_mask=keep)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, clean)


def test_explain_dispatch_of_self_attention_and_its_dtype_check():
    att = Attention(score="scaled_dot", q_dim=8, k_dim=8)
    assert explain_dispatch(att, torch.randn(2, 4, 8)).backend in ("sdpa", "blocksparse", "chunked")
    additive = Attention(score="additive", q_dim=8, k_dim=8, hidden=4)
    with pytest.raises(ShapeError, match="query: dtype torch.float64 differs from the module's torch.float32"):
        explain_dispatch(additive, torch.randn(2, 4, 8, dtype=torch.float64))


def test_dtype_errors_name_the_argument():
    with pytest.raises(ShapeError, match=r"^x: expected a floating-point tensor, got torch.int64"):
        AttentionPooling(8)(torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"^x: expected a floating-point tensor, got torch.int64"):
        MultiHeadAttention(8, heads=2)(torch.ones(2, 3, 8, dtype=torch.long))


def test_a_bad_modifier_is_named_by_its_place_in_the_list():
    with pytest.raises(ConfigError, match=r"^mods\[1\]: expected a modifier name"):
        AttentionSpec(mods=["alibi", 42], heads=2).build_mods()


def test_the_bias_cache_stays_within_its_byte_budget(monkeypatch):
    """Cached fixed biases are evicted (least recently used first) once their bytes pass
    ``BIAS_CACHE_BYTES``, a bias counted as numel x element size."""
    monkeypatch.setattr(base, "_bias_cache", type(base._bias_cache)())
    one = 2 * 5 * 7 * 4  # an ALiBi bias [1, 2, 5, 7] in float32
    monkeypatch.setattr(base, "BIAS_CACHE_BYTES", 2 * one)
    mods = [ALiBi(2)]
    grid = lambda: base.index_grid(1, 2, (0, 5), (0, 7), "cpu")
    keys = [base.bias_cache_key(mods, name) for name in "abc"]
    for key in keys:
        base.additive_bias(mods, grid, torch.float32, key)
    assert list(base._bias_cache) == keys[1:]  # the first one made room
    assert [t.numel() * t.element_size() for t in base._bias_cache.values()] == [one, one]


def test_the_block_sparse_plan_cache_keeps_the_most_recent_plans_that_fit(monkeypatch):
    from attnkit.attention.backends import blocksparse

    monkeypatch.setattr(blocksparse, "_plans", type(blocksparse._plans)())
    monkeypatch.setattr(blocksparse, "_plan_bytes", lambda plan: 100)
    monkeypatch.setattr(blocksparse, "PLAN_CACHE_BYTES", 250)
    for name in "abcd":
        blocksparse._plans[name] = {"plan": name}
    blocksparse.trim_plan_cache()
    assert list(blocksparse._plans) == ["c", "d"]  # 200 bytes fit; the oldest two went
