"""Poolers against their formulas on padded batches (float64): edge lengths, reported widths,
the attention pooler as a masked softmax over real positions per head."""
import math

import pytest
import torch

from attnkit.nn import POOLERS, AttentionPooler, FirstPooler, LastPooler, MeanPooler

DT = torch.float64


@pytest.mark.parametrize("name", POOLERS.names())
def test_pooler_reports_its_width_and_returns_no_weights_unless_asked(name):
    """``out_dim`` (what the builder sizes the head with) is the pooled width, and weights are
    only computed when ``need_weights=True``."""
    pool = POOLERS.get(name)(6)
    out, w = pool(torch.randn(2, 4, 6), torch.tensor([4, 2]))
    assert pool.out_dim == 6 == out.shape[-1]
    assert w is None


def test_mean_pooler_single_and_empty_sequences():
    """The mean of one real position is that position; an empty sequence pools to zero."""
    h = torch.randn(3, 4, 5, dtype=DT)
    out, _ = MeanPooler(5)(h, torch.tensor([1, 3, 0]))
    torch.testing.assert_close(out[0], h[0, 0])
    torch.testing.assert_close(out[1], h[1, :3].sum(0) / 3)
    assert (out[2] == 0).all()


@pytest.mark.parametrize("lengths_on_cpu", [False, True])
def test_first_and_last_poolers_pick_positions(device, lengths_on_cpu):
    """``first``: position 0; ``last``: position ``length - 1`` (also for length 1), with the
    lengths on the features' device or on the CPU."""
    h = torch.randn(3, 4, 5, dtype=DT, device=device)
    lengths = torch.tensor([4, 1, 2], device="cpu" if lengths_on_cpu else device)
    torch.testing.assert_close(FirstPooler(5)(h, lengths)[0], h[:, 0])
    torch.testing.assert_close(LastPooler(5)(h, lengths)[0], torch.stack([h[0, 3], h[1, 0], h[2, 1]]))


def test_attention_pooler_is_a_masked_softmax_per_head():
    """``scaled_dot`` with ``heads=2`` and a ``scale`` option: each head's learned query scores
    its slice of every real position, softmax over the real positions, weighted sum; outputs,
    weights and input gradients against the formula."""
    torch.manual_seed(0)
    pool = AttentionPooler(8, score="scaled_dot", heads=2, scale=0.7).to(DT)
    h = torch.randn(3, 5, 8, dtype=DT, requires_grad=True)
    lengths = [5, 3, 1]
    out, w = pool(h, torch.tensor(lengths), need_weights=True)
    assert w.shape == (3, 2, 5)
    g = torch.randn(3, 8, dtype=DT)
    (out * g).sum().backward()

    q = pool.pool.query.detach().reshape(2, 4).tolist()
    hv = h.detach().tolist()
    for b, n in enumerate(lengths):
        for j in range(2):
            sl = slice(4 * j, 4 * j + 4)
            s = [0.7 * sum(a * c for a, c in zip(q[j], hv[b][t][sl])) for t in range(n)]
            z = sum(math.exp(v) for v in s)
            p = [math.exp(v) / z for v in s] + [0.0] * (5 - n)
            assert w[b, j].tolist() == pytest.approx(p, rel=1e-10, abs=1e-12)
            want = [sum(p[t] * hv[b][t][sl][d] for t in range(n)) for d in range(4)]
            assert out[b, sl].tolist() == pytest.approx(want, rel=1e-10)
    # gradient check of the same function (float64)
    h2 = h.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pool(x, torch.tensor(lengths))[0], (h2,))
    assert (h.grad[1, 3:] == 0).all() and (h.grad[2, 1:] == 0).all()


def test_attention_pooler_options_follow_its_score():
    assert AttentionPooler.known_options({}) == ["score", "heads", "hidden"]  # additive by default
    assert AttentionPooler.known_options({"score": "scaled_dot"}) == ["score", "heads", "scale"]
    assert "hidden" in AttentionPooler.known_options({"score": "mlp"})
    assert AttentionPooler.known_options({"score": lambda q, k: q @ k.transpose(-1, -2)}) == ["score", "heads"]
