"""attnkit blocks against their PyTorch equivalents, with the weights copied over: float64,
dropout 0 / eval mode, several shapes, padded batches; outputs and gradients.

* ``EncoderLayer`` / ``TransformerEncoder`` vs ``nn.TransformerEncoderLayer`` /
  ``nn.TransformerEncoder`` (pre- and post-norm, GELU, several heads);
* ``MultiHeadAttention`` vs ``nn.MultiheadAttention`` (self and cross attention, key padding,
  head-averaged and per-head weights) and, for grouped-query heads, ``F.scaled_dot_product_attention``
  with ``enable_gqa``;
* ``LSTMEncoder`` / ``GRUEncoder`` vs ``nn.LSTM`` / ``nn.GRU`` run on each sequence alone.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.attention import AttentionSpec, MultiHeadAttention
from attnkit.nn import GRUEncoder, LSTMEncoder, TransformerEncoder
from attnkit.nn.transformer import EncoderLayer

DT = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}


def random_lengths(b, t, gen):
    """Lengths in [1, t], the first one full (so the batch really is ``t`` long)."""
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    lengths[0] = t
    return lengths


def real(lengths, t):
    """Bool ``[B, T]``: True at real (non-padded) positions, from the definition."""
    return torch.stack([torch.arange(t) < n for n in lengths.tolist()])


def randomize(module, gen):
    """Every parameter random (LayerNorm affine and biases too, which init leaves at 1 / 0)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return module


# ------------------------------------------------------------------ Transformer encoder


def copy_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """attnkit's q/k/v/out projections into torch's packed (or separate) in-projection."""
    with torch.no_grad():
        if theirs._qkv_same_embed_dim:
            theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        else:
            theirs.q_proj_weight.copy_(ours.q_proj.weight)
            theirs.k_proj_weight.copy_(ours.k_proj.weight)
            theirs.v_proj_weight.copy_(ours.v_proj.weight)
        if ours.q_proj.bias is not None:
            theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            theirs.out_proj.bias.copy_(ours.out_proj.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)


def copy_layer(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    copy_mha(ours.attn, theirs.self_attn)
    theirs.linear1.load_state_dict(ours.ff[0].state_dict())
    theirs.linear2.load_state_dict(ours.ff[3].state_dict())
    theirs.norm1.load_state_dict(ours.norm1.state_dict())
    theirs.norm2.load_state_dict(ours.norm2.state_dict())


def torch_layer(dim, heads, ff_dim, norm):
    return nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout=0.0, activation="gelu", batch_first=True,
                                      norm_first=norm == "pre", dtype=DT).eval()


def layer_grads(layer: EncoderLayer) -> dict:
    """attnkit's parameter gradients under torch's names (packed in-projection)."""
    a = layer.attn
    return {"self_attn.in_proj_weight": torch.cat([a.q_proj.weight.grad, a.k_proj.weight.grad, a.v_proj.weight.grad]),
            "self_attn.in_proj_bias": torch.cat([a.q_proj.bias.grad, a.k_proj.bias.grad, a.v_proj.bias.grad]),
            "self_attn.out_proj.weight": a.out_proj.weight.grad, "linear1.weight": layer.ff[0].weight.grad,
            "linear2.bias": layer.ff[3].bias.grad, "norm1.weight": layer.norm1.weight.grad,
            "norm2.bias": layer.norm2.bias.grad}


SHAPES = [(1, 5, 8, 1, 16), (3, 7, 12, 3, 20), (4, 9, 16, 4, 32)]  # batch, length, dim, heads, ff_dim


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("b,t,dim,heads,ff", SHAPES)
def test_encoder_layer_matches_torch_encoder_layer(norm, b, t, dim, heads, ff):
    """One EncoderLayer == nn.TransformerEncoderLayer (same weights) on the real positions,
    outputs and gradients w.r.t. the input and the parameters."""
    gen = torch.Generator().manual_seed(b * 100 + t)
    ours = randomize(EncoderLayer(dim, AttentionSpec(score="scaled_dot", heads=heads), ff, 0.0, norm).to(DT).eval(),
                     gen)
    theirs = torch_layer(dim, heads, ff, norm)
    copy_layer(ours, theirs)
    lengths = random_lengths(b, t, gen)
    keep = real(lengths, t)
    x = torch.randn(b, t, dim, generator=gen, dtype=DT)
    w = torch.randn(b, t, dim, generator=gen, dtype=DT) * keep[..., None]  # loss weights: real positions only

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, _ = ours(x1, lengths)
    want = theirs(x2, src_key_padding_mask=~keep)
    torch.testing.assert_close(got[keep], want[keep], **TOL)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    theirs_grads = {n: p.grad for n, p in theirs.named_parameters()}
    for name, g in layer_grads(ours).items():
        torch.testing.assert_close(g, theirs_grads[name], **TOL, msg=name)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("b,t,dim,heads,ff", SHAPES[1:])
def test_transformer_encoder_matches_torch_transformer_encoder(norm, b, t, dim, heads, ff):
    """TransformerEncoder (positions none, 2 layers) == nn.TransformerEncoder (+ final LayerNorm
    for pre-norm) on the real positions; padded positions are exactly zero; input gradients agree."""
    gen = torch.Generator().manual_seed(7 * b + t)
    ours = TransformerEncoder(dim, dim=dim, layers=2, ff_dim=ff, attention={"score": "scaled_dot", "heads": heads},
                              dropout=0.0, norm=norm, positions="none").to(DT).eval()
    randomize(ours, gen)
    theirs = nn.TransformerEncoder(torch_layer(dim, heads, ff, norm), num_layers=2, enable_nested_tensor=False,
                                   norm=nn.LayerNorm(dim, dtype=DT) if norm == "pre" else None).eval()
    for mine, other in zip(ours.layers, theirs.layers):
        copy_layer(mine, other)
    if norm == "pre":
        theirs.norm.load_state_dict(ours.final_norm.state_dict())
    lengths = random_lengths(b, t, gen)
    keep = real(lengths, t)
    x = torch.randn(b, t, dim, generator=gen, dtype=DT)
    w = torch.randn(b, t, dim, generator=gen, dtype=DT)

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = ours(x1, lengths)
    want = theirs(x2, src_key_padding_mask=~keep)
    torch.testing.assert_close(got[keep], want[keep], **TOL)
    assert (got[~keep] == 0).all()
    (got * w).sum().backward()
    (want * w * keep[..., None]).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    torch.testing.assert_close(ours.layers[0].ff[0].weight.grad, theirs.layers[0].linear1.weight.grad, **TOL)


# ------------------------------------------------------------------ multi-head attention


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("self_attn,b,lq,lk,dim,kv_dim,heads", [
    (True, 2, 5, 5, 8, None, 2),
    (True, 3, 6, 6, 12, None, 4),
    (False, 3, 4, 6, 12, None, 3),  # cross attention, same dim
    (False, 2, 3, 7, 8, 6, 4),  # cross attention, other key/value dim
    (False, 1, 1, 4, 4, None, 1),
])
def test_multihead_attention_matches_torch(bias, self_attn, b, lq, lk, dim, kv_dim, heads):
    """MultiHeadAttention == nn.MultiheadAttention with a key padding mask: output, head-averaged
    weights (average_attn_weights=True), per-head weights, and gradients w.r.t. query and context."""
    gen = torch.Generator().manual_seed(b + 10 * lq + 100 * lk)
    ours = randomize(MultiHeadAttention(dim, heads, kv_dim=kv_dim, bias=bias).to(DT).eval(), gen)
    theirs = nn.MultiheadAttention(dim, heads, bias=bias, kdim=kv_dim, vdim=kv_dim, batch_first=True, dtype=DT).eval()
    copy_mha(ours, theirs)
    x = torch.randn(b, lq, dim, generator=gen, dtype=DT)
    ctx = x if self_attn else torch.randn(b, lk, kv_dim or dim, generator=gen, dtype=DT)
    lengths = random_lengths(b, lk, gen)
    keep = real(lengths, lk)

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    c1, c2 = (x1, x2) if self_attn else (ctx.clone().requires_grad_(), ctx.clone().requires_grad_())
    got, w_got = ours(x1, None if self_attn else c1, key_padding_mask=keep, need_weights=True)
    want, w_mean = theirs(x2, c2, c2, key_padding_mask=~keep, need_weights=True, average_attn_weights=True)
    _, w_heads = theirs(x2, c2, c2, key_padding_mask=~keep, need_weights=True, average_attn_weights=False)
    assert w_got.shape == (b, heads, lq, lk)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(w_got.mean(1), w_mean, **TOL)
    torch.testing.assert_close(w_got, w_heads, **TOL)
    assert (w_got[~keep[:, None, None, :].expand_as(w_got)] == 0).all()
    by_lengths, _ = ours(x1, None if self_attn else c1, lengths=lengths)  # lengths: the same mask
    torch.testing.assert_close(by_lengths, got, **TOL)

    g = torch.randn(got.shape, generator=gen, dtype=DT)
    (got * g).sum().backward()
    (want * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    if not self_attn:
        torch.testing.assert_close(c1.grad, c2.grad, **TOL)
    torch.testing.assert_close(ours.out_proj.weight.grad, theirs.out_proj.weight.grad, **TOL)


@pytest.mark.parametrize("b,lq,lk,heads,kv_heads,head_dim", [(2, 5, 5, 4, 2, 3), (3, 4, 6, 6, 3, 2),
                                                              (1, 3, 7, 4, 1, 4)])
def test_grouped_query_attention_matches_sdpa_with_enable_gqa(b, lq, lk, heads, kv_heads, head_dim):
    """kv_heads < heads == F.scaled_dot_product_attention(enable_gqa=True) on the same projections;
    per-head weights == softmax(q k^T / sqrt(d)) with query head i reading key/value head
    i // (heads / kv_heads); gradients w.r.t. the input agree."""
    gen = torch.Generator().manual_seed(b * lq * lk + heads)
    dim = heads * head_dim
    ours = randomize(MultiHeadAttention(dim, spec=AttentionSpec(heads=heads, kv_heads=kv_heads)).to(DT).eval(), gen)
    assert ours.k_proj.out_features == kv_heads * head_dim
    x = torch.randn(b, lq, dim, generator=gen, dtype=DT)
    ctx = torch.randn(b, lk, dim, generator=gen, dtype=DT)
    lengths = random_lengths(b, lk, gen)
    keep = real(lengths, lk)

    def reference(x, ctx):
        def heads_of(t, n):
            return t.view(b, t.shape[1], n, head_dim).transpose(1, 2)
        q = heads_of(x @ ours.q_proj.weight.T + ours.q_proj.bias, heads)
        k = heads_of(ctx @ ours.k_proj.weight.T + ours.k_proj.bias, kv_heads)
        v = heads_of(ctx @ ours.v_proj.weight.T + ours.v_proj.bias, kv_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], enable_gqa=True)
        out = out.transpose(1, 2).reshape(b, lq, dim) @ ours.out_proj.weight.T + ours.out_proj.bias
        group = torch.arange(heads) // (heads // kv_heads)
        scores = q @ k[:, group].transpose(-1, -2) / head_dim ** 0.5
        return out, torch.softmax(scores.masked_fill(~keep[:, None, None, :], float("-inf")), -1)

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, w_got = ours(x1, ctx, lengths=lengths, need_weights=True)
    want, w_want = reference(x2, ctx)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(w_got, w_want, **TOL)
    g = torch.randn(got.shape, generator=gen, dtype=DT)
    (got * g).sum().backward()
    (want * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)


# ------------------------------------------------------------------ recurrent encoders


@pytest.mark.parametrize("cls,cell", [(LSTMEncoder, nn.LSTM), (GRUEncoder, nn.GRU)], ids=["lstm", "gru"])
@pytest.mark.parametrize("b,t,in_dim,hidden", [(1, 4, 3, 5), (4, 7, 6, 4), (3, 9, 2, 6)])
def test_rnn_encoder_matches_torch_rnn_on_each_sequence_alone(cls, cell, b, t, in_dim, hidden):
    """2-layer bidirectional LSTM/GRU encoder on a padded batch == torch's LSTM/GRU (same weights)
    run on each sequence unpadded, one at a time; padded outputs are zero; input gradients agree."""
    gen = torch.Generator().manual_seed(b * 31 + t)
    ours = randomize(cls(in_dim, hidden=hidden, layers=2, bidirectional=True, dropout=0.0).to(DT).eval(), gen)
    theirs = cell(in_dim, hidden, num_layers=2, bidirectional=True, batch_first=True, dtype=DT).eval()
    theirs.load_state_dict(ours.rnn.state_dict())
    lengths = random_lengths(b, t, gen)
    if b > 1:
        lengths[0] = t - 1  # no row fills the batch: padding must still come back t long
    x = torch.randn(b, t, in_dim, generator=gen, dtype=DT)
    g = torch.randn(b, t, 2 * hidden, generator=gen, dtype=DT)

    x1 = x.clone().requires_grad_()
    got = ours(x1, lengths)
    assert got.shape == (b, t, 2 * hidden)
    (got * g).sum().backward()
    for i, n in enumerate(lengths.tolist()):
        xi = x[i:i + 1, :n].clone().requires_grad_()
        want, _ = theirs(xi)
        torch.testing.assert_close(got[i, :n], want[0], **TOL)
        assert (got[i, n:] == 0).all()
        (want[0] * g[i, :n]).sum().backward()
        torch.testing.assert_close(x1.grad[i, :n], xi.grad[0], **TOL)
        assert (x1.grad[i, n:] == 0).all()


@pytest.mark.parametrize("cls,cell", [(LSTMEncoder, nn.LSTM), (GRUEncoder, nn.GRU)], ids=["lstm", "gru"])
def test_rnn_encoder_zero_length_row_is_zero_and_leaves_the_others(cls, cell):
    """A length-0 sequence (which torch cannot pack) gives all-zero outputs; the other rows
    still equal torch's LSTM/GRU run on them alone."""
    gen = torch.Generator().manual_seed(3)
    ours = randomize(cls(3, hidden=4, layers=2, bidirectional=True).to(DT).eval(), gen)
    theirs = cell(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=DT).eval()
    theirs.load_state_dict(ours.rnn.state_dict())
    x = torch.randn(3, 5, 3, generator=gen, dtype=DT)
    got = ours(x, torch.tensor([5, 0, 2]))
    assert (got[1] == 0).all() and (got[2, 2:] == 0).all()
    torch.testing.assert_close(got[0], theirs(x[:1])[0][0], **TOL)
    torch.testing.assert_close(got[2, :2], theirs(x[2:, :2])[0][0], **TOL)
