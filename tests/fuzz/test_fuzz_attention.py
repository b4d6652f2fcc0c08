"""Attention calls with random shapes (empty ones too), dtypes, masks, lengths and non-finite
values: a result of the right shape (finite wherever the valid inputs are), or one
:class:`~attnkit.errors.AttnkitError` line naming the argument."""
from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit.attention import AttentionPooling, MultiHeadAttention

from .contract import check_call


@given(b=st.integers(0, 3), n=st.integers(0, 9), heads=st.sampled_from([1, 2, 3]), dim=st.sampled_from([4, 6, 8]),
       score=st.sampled_from(["scaled_dot", "dot", "additive", "mlp", "cosine", "general"]),
       mask=st.sampled_from([[], ["causal"], [{"window": 2}], ["causal", {"window": 1}]]),
       backend=st.sampled_from(["auto", "reference", "chunked", "blocksparse", "sdpa"]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.int64]),
       lengths=st.one_of(st.none(), st.lists(st.integers(-1, 10), min_size=0, max_size=4)),
       poison=st.booleans(), need_weights=st.booleans())
def test_any_multi_head_attention_call(b, n, heads, dim, score, mask, backend, dtype, lengths, poison, need_weights):
    torch.manual_seed(0)
    mha = check_call("attention module build", MultiHeadAttention, dim, heads=heads, score=score, mask=mask,
                     backend=backend)
    if isinstance(mha, Exception):
        return
    x = torch.randn(b, n, dim).to(dtype) if dtype != torch.int64 else torch.randint(0, 3, (b, n, dim))
    lens = None if lengths is None else torch.tensor(lengths, dtype=torch.long)
    if poison and lens is not None and b and n and len(lengths) == b and all(0 < v <= n for v in lengths):
        if dtype.is_floating_point:
            for i, v in enumerate(lengths):
                x[i, v:] = float("nan")  # only in padding
    mha = mha.to(dtype) if dtype.is_floating_point else mha
    result = check_call("attention module call", mha, x, lengths=lens, need_weights=need_weights)
    if isinstance(result, Exception):
        return
    out, w = result
    assert out.shape == (b, n, dim)
    if lens is not None and dtype.is_floating_point:
        real = torch.arange(n)[None, :] < lens[:, None]
        assert torch.isfinite(out[real]).all()  # a valid position never sees the padding's NaN


@given(b=st.integers(0, 3), n=st.integers(0, 7), score=st.sampled_from(["additive", "scaled_dot", "mlp"]),
       values=st.sampled_from([0.0, 1e30, -1e30, 1e-30]), heads=st.sampled_from([1, 2]))
def test_any_pooling_call(b, n, score, values, heads):
    pool = AttentionPooling(8, score=score, heads=heads)
    x = torch.full((b, n, 8), values)
    out = check_call("attention pooling", pool, x, lengths=torch.full((b,), n), need_weights=True)
    if not isinstance(out, Exception):
        assert out[0].shape == (b, 8) and out[1].shape == (b, heads, n)
