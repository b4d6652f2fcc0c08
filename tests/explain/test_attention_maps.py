"""Attention maps: hooks return what the layers compute; rollout and relevance against
float64 references written from the formulas."""
import numpy as np
import pytest
import torch

from attnkit.attention import Attention, AttentionPooling, MultiHeadAttention
from attnkit.explain import record_attention, rollout, token_relevance


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = MultiHeadAttention(8, heads=2)
        self.cross = MultiHeadAttention(8, heads=2)
        self.single = Attention(8, score="additive", hidden=4)
        self.pool = AttentionPooling(8, heads=2)

    def forward(self, x, ctx, lengths):
        h, _ = self.self_attn(x, lengths=lengths)
        h, _ = self.cross(h, ctx)
        h, _ = self.single(h)
        return self.pool(h, lengths=lengths)[0]


def test_record_attention_returns_each_layers_own_weights_and_unhooks():
    net = Net().eval()
    x, ctx, lengths = torch.randn(3, 5, 8), torch.randn(3, 4, 8), torch.tensor([5, 3, 1])
    with record_attention(net) as recs:
        out = net(x, ctx, lengths)
    assert [(r.name, r.kind) for r in recs] == [("self_attn", "self"), ("cross", "cross"), ("single", "self"),
                                                ("pool", "pooling")]
    torch.testing.assert_close(out, net(x, ctx, lengths))  # asking for weights changes no output
    _, w_self = net.self_attn(x, lengths=lengths, need_weights=True)
    torch.testing.assert_close(recs[0].weights, w_self)
    assert recs[0].weights.shape == (3, 2, 5, 5) and recs[1].weights.shape == (3, 2, 5, 4)
    assert recs[3].weights.shape == (3, 2, 5)
    assert float(recs[3].weights[2, :, 1:].abs().max()) == 0.0  # padding gets no weight
    with record_attention(net) as again:
        pass
    net(x, ctx, lengths)
    assert again == []  # hooks are gone after the block
    assert net.pool(x, lengths=lengths)[1] is None


def rollout_reference(layers, residual=0.5):
    """Abnar & Zuidema (2020) in float64 numpy, example by example."""
    out = []
    for b in range(layers[0].shape[0]):
        r = None
        for a in layers:
            m = a[b].astype(np.float64).mean(0)
            m = residual * np.eye(m.shape[0]) + (1 - residual) * m
            m = m / m.sum(-1, keepdims=True)
            r = m if r is None else m @ r
        out.append(r)
    return np.stack(out)


@pytest.mark.parametrize("b,heads,t,n_layers", [(1, 1, 3, 1), (2, 4, 7, 3), (3, 2, 12, 6)])
def test_rollout_and_relevance_match_float64_reference(b, heads, t, n_layers):
    layers = [torch.softmax(torch.randn(b, heads, t, t), -1) for _ in range(n_layers)]
    got = rollout(layers)
    want = rollout_reference([a.numpy() for a in layers])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=1e-5)
    pool = torch.softmax(torch.randn(b, 2, t), -1)
    rel = token_relevance(pool, layers, first_position=False)
    np.testing.assert_allclose(rel.numpy(), np.einsum("bt,bts->bs", pool.double().mean(1).numpy(), want),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(token_relevance(None, layers, first_position=True).numpy(), want[:, 0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not read one position"):
        token_relevance(None, layers, first_position=False)


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(4).expand(2, 3, 4, 4)
    torch.testing.assert_close(rollout([eye, eye]), torch.eye(4).expand(2, 4, 4))
