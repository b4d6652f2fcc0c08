"""The Transformer encoder's own parts: the sinusoidal table against Vaswani et al.'s formula,
positions added to the input, attention weights on request (pre- and post-norm), defaults,
size checks, an ``AttentionSpec`` object as ``attention``, checkpoints without the table."""
import math

import pytest
import torch

from attnkit.attention import AttentionSpec
from attnkit.errors import ConfigError
from attnkit.nn import TransformerEncoder, sinusoidal_positions
from attnkit.nn.transformer import EncoderLayer


def table_reference(n, dim):
    """``PE[p, 2i] = sin(p / 10000^(2i/dim))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/dim))`` (float64)."""
    out = torch.zeros(n, dim, dtype=torch.float64)
    for p in range(n):
        for c in range(dim):
            angle = p / 10000 ** ((c - c % 2) / dim)
            out[p, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    return out


@pytest.mark.parametrize("n,dim", [(512, 16), (9, 7)])
def test_sinusoidal_positions_match_the_formula(n, dim):
    got = sinusoidal_positions(n, dim)
    assert got.shape == (n, dim)
    torch.testing.assert_close(got.double(), table_reference(n, dim), rtol=0, atol=2e-5)


def test_sinusoidal_positions_are_added_to_the_input():
    """An encoder with sinusoidal positions == the same weights without positions, run on
    ``x + PE``."""
    torch.manual_seed(0)
    kw = dict(dim=8, layers=1, dropout=0.0, max_len=10, attention={"heads": 2})
    with_pos = TransformerEncoder(8, positions="sinusoidal", **kw).double().eval()
    without = TransformerEncoder(8, positions="none", **kw).double().eval()
    without.load_state_dict(with_pos.state_dict())
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    lengths = torch.tensor([6, 4])
    want = without(x + table_reference(6, 8), lengths)
    torch.testing.assert_close(with_pos(x, lengths), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [4.0, 0.5])
def test_input_scale_multiplies_the_input_before_the_positions(scale):
    """``input_scale`` s: the same weights without positions on ``s x + PE``."""
    torch.manual_seed(1)
    kw = dict(dim=8, layers=1, dropout=0.0, max_len=10, attention={"heads": 2})
    scaled = TransformerEncoder(8, positions="sinusoidal", input_scale=scale, **kw).double().eval()
    plain = TransformerEncoder(8, positions="none", **kw).double().eval()
    plain.load_state_dict(scaled.state_dict())
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    lengths = torch.tensor([7, 3])
    torch.testing.assert_close(scaled(x, lengths), plain(scale * x + table_reference(7, 8), lengths),
                               rtol=1e-5, atol=1e-6)


def test_checkpoints_do_not_store_the_sinusoidal_table():
    """The table is recomputed, not saved: weights load into an encoder with another max_len."""
    a = TransformerEncoder(8, dim=8, layers=1, max_len=16, attention={"heads": 2})
    b = TransformerEncoder(8, dim=8, layers=1, max_len=64, attention={"heads": 2})
    assert not any("pos" in k for k in a.state_dict())
    b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_attention_weights_only_on_request(norm):
    """``last_weights`` is None before any call and after a call without ``need_weights``;
    with it, one ``[B, heads, T, T]`` distribution over the real keys per layer."""
    enc = TransformerEncoder(8, dim=8, layers=2, dropout=0.0, norm=norm, attention={"heads": 2})
    assert enc.last_weights is None
    x, lengths = torch.randn(2, 5, 8), torch.tensor([5, 3])
    enc(x, lengths)
    assert enc.last_weights is None
    enc(x, lengths, need_weights=True)
    assert len(enc.last_weights) == 2
    for w in enc.last_weights:
        assert w.shape == (2, 2, 5, 5)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5))
        assert (w[1, :, :, 3:] == 0).all()
    layer = EncoderLayer(8, AttentionSpec(heads=2), 16, 0.0, norm)
    assert layer(x, lengths)[1] is None


def test_attention_given_as_a_spec_object():
    """``attention`` may be an :class:`AttentionSpec` (used as is: here 2 heads, not 4)."""
    enc = TransformerEncoder(8, dim=8, layers=1, attention=AttentionSpec(score="dot", heads=2))
    enc(torch.randn(1, 3, 8), torch.tensor([3]), need_weights=True)
    assert enc.last_weights[0].shape == (1, 2, 3, 3)


def test_transformer_defaults():
    """Defaults: width 128, 2 layers, feed-forward 4 x width, inputs up to 512 positions."""
    enc = TransformerEncoder(8)
    assert enc.out_dim == 128 and len(enc.layers) == 2
    assert all(layer.ff[0].out_features == 512 for layer in enc.layers)
    assert enc(torch.randn(1, 512, 8), torch.tensor([512])).shape == (1, 512, 128)
    with pytest.raises(ConfigError, match="max_len=512"):
        enc(torch.randn(1, 513, 8), torch.tensor([513]))


@pytest.mark.parametrize("key", ["dim", "layers", "max_len", "input_scale"])
def test_transformer_rejects_non_positive_sizes(key):
    with pytest.raises(ConfigError, match=rf"^encoder\.{key}: must be > 0, got 0$"):
        TransformerEncoder(8, **{key: 0})


def test_the_length_a_transformer_encoder_allows():
    from attnkit.nn.transformer import position_limit

    assert position_limit({}) == 512  # a transformer with sinusoidal positions by default
    assert position_limit({"type": "transformer", "max_len": 64}) == 64
    assert position_limit({"type": "transformer", "positions": "learned", "max_len": 32}) == 32
    assert position_limit({"type": "transformer", "positions": "none", "max_len": 64}) is None
    assert position_limit({"type": "lstm", "max_len": 64}) is None
