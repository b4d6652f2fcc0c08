"""The block-sparse band: one fused call (forward and backward) for all query blocks where their
key spans line up, held to the float64 oracle; plans whose spans differ keep the tile path."""
import pytest
import torch

from attnkit.attention import masks as M
from attnkit.attention.backends import band, blocksparse
from attnkit.attention.backends.tiles import plan_tiles
from attnkit.attention.functional import attend

from .cases import make_score
from .oracle import oracle_attention, truth_table


def _counting(monkeypatch, name):
    calls = []
    real = getattr(band, name)

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(band, name, counted)
    return calls


@pytest.mark.parametrize("b,h,lq,lk,d,w", [(1, 2, 100, 100, 8, 5), (2, 3, 67, 67, 4, 20), (3, 1, 48, 48, 6, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_a_window_runs_in_one_call_each_way_and_matches_the_oracle(small_tiles, b, h, lq, lk, d, w, dtype):
    # forced: at these sizes the edge blocks' narrower spans can exceed the default waste
    small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    fwd, bwd = _counting(small_tiles, "_flash"), _counting(small_tiles, "_flash_bwd")
    score = make_score("scaled_dot", d, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for n in (lq, lk, lk))
    out, _, info = attend(q, k, v, score, M.window(w), backend="blocksparse")
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    assert len(fwd) == 1 and len(bwd) == 1  # every query block in one call each way
    assert fwd[0][0] == -(-lq // 16)  # the blocks stacked on the batch axis

    allowed = truth_table(lambda x, i, j: abs(i - j) <= w, b, lq, lk)
    ref_q, ref_k, ref_v = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = oracle_attention(ref_q, ref_k, ref_v, score.double(), allowed)
    (ref.out * upstream.double()).sum().backward()
    # bf16: about 8 bits of mantissa through two matrix products (a wrong mask or block is off by ~1)
    tol, gtol = {torch.float64: (dict(atol=1e-10, rtol=1e-9),) * 2,
                 torch.float32: (dict(atol=2e-5, rtol=1e-4), dict(atol=1e-4, rtol=1e-3)),
                 torch.bfloat16: (dict(atol=4e-2, rtol=4e-2),) * 2}[dtype]
    torch.testing.assert_close(out.double(), ref.out, **tol)
    for got, want in ((q.grad, ref_q.grad), (k.grad, ref_k.grad), (v.grad, ref_v.grad)):
        torch.testing.assert_close(got.double(), want, **gtol)


def test_padded_keys_beside_a_window_and_rows_that_see_nothing(small_tiles):
    """A per-batch mask (key padding) inside the band, with a batch row that has no keys: its
    output and gradients are zero, the others match the oracle."""
    small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    b, h, l, d = 3, 2, 70, 4
    lengths = torch.tensor([0, 40, 70])
    mask = M.window(9) & M.key_padding(lengths)
    score = make_score("dot", d, "cpu")
    q, k, v = (torch.randn(b, h, l, d, requires_grad=True) for _ in range(3))
    fwd = _counting(small_tiles, "_flash")
    out, _, _ = attend(q, k, v, score, mask, backend="blocksparse")
    assert len(fwd) == 1
    out.sum().backward()
    allowed = truth_table(lambda x, i, j: abs(i - j) <= 9 and j < int(lengths[x]), b, l, l)
    ref = oracle_attention(q.detach().double(), k.detach().double(), v.detach().double(), score.double(), allowed)
    torch.testing.assert_close(out.double(), ref.out, atol=2e-5, rtol=1e-4)
    assert torch.all(out[0] == 0) and torch.all(q.grad[0] == 0)
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_plans_with_uneven_spans_keep_the_tile_path(small_tiles):
    """Causal attention with a prefix (spans grow with the query) would pad the band to the
    widest span: about twice the keys, so the tiles run; a window's spans are equal."""
    lq = lk = 160
    causal = plan_tiles(M.causal() | M.prefix_lm(3), 1, 1, lq, lk, 16, 16, "cpu", merge=True)
    window = plan_tiles(M.window(16), 1, 1, lq, lk, 16, 16, "cpu", merge=True)
    waste = blocksparse.BlockSparseBackend.band_waste
    assert band.band_layout(causal, lq, lk, 1, 1, torch.float32, "cpu", waste) is None
    layout = band.band_layout(window, lq, lk, 1, 1, torch.float32, "cpu", waste)
    # block j holds queries [16j, 16j + 16) and sees keys [16j - 16, 16j + 32): windows of 48 keys
    # starting at 16j - 16 (the first block's cut at 0, the last one's at 160)
    assert layout is not None and layout.blocks == 10 and layout.first == -16 and layout.width == 48
    assert tuple(layout.mask.shape) == (10, 1, 16, 48)  # no batch or head dependence: one mask per block


def test_a_mask_per_head_in_the_band(small_tiles):
    """A mask that differs by head (and so by batch x head in the stacked call) against the oracle."""
    small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    b, h, lq, lk, d = 2, 3, 52, 61, 5
    score = make_score("scaled_dot", d, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk))
    fwd = _counting(small_tiles, "_flash")
    out, _, _ = attend(q, k, v, score, [M.window(6), lambda bi, hi, qi, ki: (ki + hi) % 3 != 0],
                       backend="blocksparse")
    assert len(fwd) == 1
    out.sum().backward()
    for head in range(h):
        allowed = truth_table(lambda x, i, j: abs(i - j) <= 6 and (j + head) % 3 != 0, b, lq, lk)
        ref_q, ref_k, ref_v = (t.detach()[:, head:head + 1].requires_grad_() for t in (q, k, v))
        ref = oracle_attention(ref_q, ref_k, ref_v, score.double(), allowed)
        ref.out.sum().backward()
        torch.testing.assert_close(out[:, head:head + 1], ref.out, atol=1e-10, rtol=1e-9)
        for got, want in ((q.grad, ref_q.grad), (k.grad, ref_k.grad), (v.grad, ref_v.grad)):
            torch.testing.assert_close(got[:, head:head + 1], want, atol=1e-10, rtol=1e-9)


def test_windows_that_start_after_their_queries(small_tiles):
    """A look-ahead band (keys 20..40 after each query): every window starts past its block, the
    keys before the first window are never read, and their gradient is zero."""
    small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    b, h, lq, lk, d = 2, 2, 70, 90, 4
    score = make_score("scaled_dot", d, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk))
    ahead = lambda bi, hi, qi, ki: (ki - qi >= 20) & (ki - qi <= 40)  # noqa: E731  (keys 20..40 ahead)
    fwd = _counting(small_tiles, "_flash")
    out, _, _ = attend(q, k, v, score, ahead, backend="blocksparse")
    assert len(fwd) == 1
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    allowed = truth_table(lambda x, i, j: 20 <= j - i <= 40, b, lq, lk)
    ref_q, ref_k, ref_v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    ref = oracle_attention(ref_q, ref_k, ref_v, score.double(), allowed)
    (ref.out * upstream).sum().backward()
    torch.testing.assert_close(out, ref.out, atol=1e-10, rtol=1e-9)
    for got, want in ((q.grad, ref_q.grad), (k.grad, ref_k.grad), (v.grad, ref_v.grad)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)
    assert torch.all(k.grad[:, :, :20] == 0)


def test_positional_masks_are_planned_once_and_others_every_call(small_tiles, monkeypatch):
    """A window (by value: a new window(7) object hits the same plan) is planned once; a user
    mask and a mask over tensors are planned on every call; different sizes never share."""
    calls = []
    real = blocksparse.plan_tiles
    monkeypatch.setattr(blocksparse, "plan_tiles", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    monkeypatch.setattr(blocksparse, "_plans", type(blocksparse._plans)())
    score = make_score("scaled_dot", 4, "cpu")
    q, k, v = (torch.randn(2, 2, 60, 4) for _ in range(3))
    outs = [attend(q, k, v, score, m, backend="blocksparse")[0]
            for m in (M.window(7), M.window(7), M.causal() & M.window(7), M.window(9), M.window(7))]
    assert calls == ["window(7)", "(causal & window(7))", "window(9)"]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[4])
    assert not torch.allclose(outs[0], outs[3])  # window(9) got its own plan
    allowed = truth_table(lambda x, i, j: abs(i - j) <= 7, 2, 60, 60)  # the reused plan is still right
    ref = oracle_attention(q.double(), k.double(), v.double(), score.double(), allowed)
    torch.testing.assert_close(outs[4].double(), ref.out, atol=2e-5, rtol=1e-4)
    calls.clear()
    lengths = torch.tensor([30, 60])
    for _ in range(2):
        attend(q, k, v, score, M.window(7) & M.key_padding(lengths), backend="blocksparse")
        attend(q, k, v, score, lambda b, h, i, j: (i - j).abs() <= 7, backend="blocksparse")
    assert len(calls) == 4
    assert M.prefix_lm(torch.tensor([3, 4])).cache_key is None and M.prefix_lm(3).cache_key == ("prefix_lm", 3)
    assert (~M.window(2)).cache_key == ("~", ("window", 2))


def test_keys_past_the_last_window_are_never_read(small_tiles):
    """Causal with a window over many more keys than queries: keys after the last window get
    zero gradient; non-contiguous (transposed) inputs take the copying branch of the layout."""
    small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    b, h, lq, lk, d = 2, 3, 48, 200, 4
    score = make_score("scaled_dot", d, "cpu")
    q, k, v = (torch.randn(b, n, h, d, dtype=torch.float64).transpose(1, 2).requires_grad_()
               for n in (lq, lk, lk))  # [B, H, L, D] views of [B, L, H, D]
    fwd = _counting(small_tiles, "_flash")
    out, _, _ = attend(q, k, v, score, M.causal() & M.window(10), backend="blocksparse")
    assert len(fwd) == 1
    out.sum().backward()
    allowed = truth_table(lambda x, i, j: 0 <= i - j <= 10, b, lq, lk)
    ref_q, ref_k, ref_v = (t.detach().contiguous().requires_grad_() for t in (q, k, v))
    ref = oracle_attention(ref_q, ref_k, ref_v, score.double(), allowed)
    ref.out.sum().backward()
    torch.testing.assert_close(out, ref.out, atol=1e-10, rtol=1e-9)
    for got, want in ((q.grad, ref_q.grad), (k.grad, ref_k.grad), (v.grad, ref_v.grad)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)
    assert torch.all(k.grad[:, :, lq:] == 0) and torch.all(v.grad[:, :, lq:] == 0)
