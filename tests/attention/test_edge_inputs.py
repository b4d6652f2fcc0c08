"""Empty batches and empty sequences are legal: every attention module returns empty outputs
of the right shape (zero output and weights where queries have no keys), and gradients flow."""
import pytest
import torch

from attnkit.attention import Attention, AttentionPooling, MultiHeadAttention, attend, build_score

SHAPES = [(0, 5), (2, 0), (0, 0)]


@pytest.mark.parametrize("b,n", SHAPES)
@pytest.mark.parametrize("kind", ["scaled_dot", "additive", "mlp"])
@pytest.mark.parametrize("backend", ["auto", "reference", "chunked", "flex"])
def test_multi_head_attention_on_empty_input(b, n, kind, backend):
    if backend == "flex" and kind != "scaled_dot":
        pytest.skip("flex runs dot-product scores only")
    mha = MultiHeadAttention(8, heads=2, score=kind, backend=backend)
    x = torch.randn(b, n, 8, requires_grad=True)
    out, w = mha(x, lengths=torch.full((b,), n), need_weights=backend != "flex")
    assert out.shape == (b, n, 8)
    if w is not None:
        assert w.shape == (b, 2, n, n)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert mha.last_dispatch.backend == "none"


@pytest.mark.parametrize("b,n", SHAPES)
def test_pooling_over_nothing_is_zero(b, n):
    pool = AttentionPooling(8, heads=2)
    x = torch.randn(b, n, 8)
    pooled, w = pool(x, lengths=torch.full((b,), n), need_weights=True)
    assert pooled.shape == (b, 8) and w.shape == (b, 2, n)
    assert torch.equal(pooled, torch.zeros(b, 8))


def test_attention_with_queries_but_no_keys_gives_zero_rows():
    att = Attention(4)
    out, w = att(torch.randn(2, 3, 4), torch.randn(2, 0, 4), need_weights=True)
    assert torch.equal(out, torch.zeros(2, 3, 4)) and w.shape == (2, 3, 0)


def test_empty_attention_says_so_and_returns_weights_only_when_asked():
    score = build_score("scaled_dot", 4, 4)
    q, k = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 0, 4)
    out, w, d = attend(q, k, k, score)
    assert w is None and out.shape == (2, 1, 3, 4) and out.dtype == q.dtype
    assert d.backend == "none" and d.reason == "empty input: nothing to attend (zero-size output, no kernel runs)"
    out, w, _ = attend(q, k, k, score, need_weights=True)
    assert w.shape == (2, 1, 3, 0) and w.dtype == q.dtype


def test_attend_still_checks_shapes_when_empty():
    score = build_score("scaled_dot", 4, 4)
    with pytest.raises(ValueError, match="batch sizes differ"):
        attend(torch.randn(0, 1, 2, 4), torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4), score)
    with pytest.raises(ValueError, match="query dim 4 and key dim 4, got query dim 3"):
        attend(torch.randn(0, 1, 2, 3), torch.randn(0, 1, 2, 3), torch.randn(0, 1, 2, 3), score)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("score,backend", [("scaled_dot", "auto"), ("scaled_dot", "reference"),
                                           ("scaled_dot", "blocksparse"), ("additive", "chunked"),
                                           ("mlp", "reference")])
def test_non_finite_padding_never_reaches_a_valid_output(bad, score, backend):
    """``0 * nan`` is nan: padding is zeroed before the weighted sum, so garbage there is harmless."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, heads=2, score=score, backend=backend)
    x = torch.randn(2, 6, 8)
    clean, _ = mha(x, lengths=torch.tensor([4, 6]))
    x[0, 4:] = bad
    out, w = mha(x, lengths=torch.tensor([4, 6]), need_weights=backend != "blocksparse")
    assert torch.isfinite(out[0, :4]).all() and torch.isfinite(out[1]).all()  # padded queries: nobody reads them
    torch.testing.assert_close(out[0, :4], clean[0, :4])
    torch.testing.assert_close(out[1], clean[1])
    pool = AttentionPooling(8, score=score)
    pooled, _ = pool(x, lengths=torch.tensor([4, 6]))
    assert torch.isfinite(pooled).all()


def test_non_finite_padded_keys_in_cross_attention():
    att = Attention(4)
    k = torch.randn(1, 5, 4)
    keep = torch.tensor([[True, True, True, False, False]])
    q = torch.randn(1, 2, 4)
    clean, _ = att(q, k, key_padding_mask=keep)
    k[0, 3:] = float("nan")
    out, _ = att(q, k, key_padding_mask=keep)
    torch.testing.assert_close(out, clean)


def test_non_finite_real_input_is_not_hidden():
    """A NaN in a real position is the caller's to see: it is not zeroed away."""
    mha = MultiHeadAttention(8)
    x = torch.randn(1, 3, 8)
    x[0, 1, 0] = float("nan")
    out, _ = mha(x, lengths=torch.tensor([3]))
    assert torch.isnan(out).any()
