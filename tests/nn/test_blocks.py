"""Encoders, poolers, embeddings and heads: shapes, padding invariance and gradients,
driven by the registries so a new block is tested without new test code."""
import pytest
import torch
import torch.nn.functional as F

from attnkit.errors import ConfigError, DataError
from attnkit.nn import (
    ENCODERS,
    POOLERS,
    CharCNN,
    ClassificationHead,
    TokenClassificationHead,
    TokenEmbedding,
    TransformerEncoder,
    read_vectors,
)

SEQUENCE_ENCODERS = [n for n in ENCODERS.names() if n != "image_cnn"]
SMALL = {"lstm": {"hidden": 8, "layers": 2}, "gru": {"hidden": 8}, "textcnn": {"channels": 4},
         "transformer": {"dim": 16, "layers": 2, "dropout": 0.0, "attention": {"heads": 2}}}


def build_encoder(name, in_dim=12):
    torch.manual_seed(0)
    return ENCODERS.get(name)(in_dim, **SMALL.get(name, {})).eval()


@pytest.mark.parametrize("name", SEQUENCE_ENCODERS)
def test_encoder_ignores_padding(name):
    enc = build_encoder(name)
    x = torch.randn(3, 9, 12)
    lengths = torch.tensor([9, 5, 1])
    out = enc(x, lengths)
    assert out.shape == (3, 9, enc.out_dim)
    noisy = x.clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, n:] = torch.randn(9 - n, 12) * 100  # padding content must not matter
    assert torch.allclose(enc(noisy, lengths), out, atol=1e-5)
    for i, n in enumerate(lengths.tolist()):
        assert (out[i, n:] == 0).all()
        alone = enc(x[i:i + 1, :n], lengths[i:i + 1])  # same as run without padding
        assert torch.allclose(alone[0], out[i, :n], atol=1e-5)


@pytest.mark.parametrize("name", SEQUENCE_ENCODERS)
def test_encoder_gradients_reach_inputs_and_parameters(name):
    enc = build_encoder(name).train()
    x = torch.randn(2, 6, 12, requires_grad=True)
    enc(x, torch.tensor([6, 3])).sum().backward()
    assert x.grad.abs().sum() > 0 and (x.grad[1, 3:] == 0).all()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_image_cnn_feature_map_as_sequence():
    enc = ENCODERS.get("image_cnn")(1, channels=(4, 8), pool_after=[0, 1])
    out = enc(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7 * 7, 8)


@pytest.mark.parametrize("name", POOLERS.names())
def test_pooler_ignores_padding(name):
    torch.manual_seed(0)
    pool = POOLERS.get(name)(8)
    h = torch.randn(3, 5, 8)
    lengths = torch.tensor([5, 3, 2])
    out, _ = pool(h, lengths)
    noisy = h.clone()
    noisy[1, 3:] = 50.0
    noisy[2, 2:] = -50.0
    assert out.shape == (3, 8)
    assert torch.allclose(pool(noisy, lengths)[0], out, atol=1e-6)


def test_mean_max_last_poolers_match_formula():
    h = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    assert torch.allclose(POOLERS.get("mean")(3)(h, lengths)[0][1], h[1, :2].mean(0))
    assert torch.allclose(POOLERS.get("max")(3)(h, lengths)[0][1], h[1, :2].amax(0))
    assert torch.allclose(POOLERS.get("last")(3)(h, lengths)[0][1], h[1, 1])


def test_attention_pooler_weights_are_a_distribution_over_real_tokens():
    pool = POOLERS.get("attention")(8, score="mlp", hidden=16)
    _, w = pool(torch.randn(2, 6, 8), torch.tensor([6, 4]), need_weights=True)
    assert w.shape == (2, 1, 6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 1))
    assert (w[1, :, 4:] == 0).all()


def test_transformer_runs_any_attention_spec_and_returns_weights():
    enc = TransformerEncoder(8, dim=16, layers=2, dropout=0.0, positions="none",
                             attention={"score": "additive", "mods": ["alibi"], "heads": 2})
    out = enc(torch.randn(2, 7, 8), torch.tensor([7, 4]), need_weights=True)
    assert out.shape == (2, 7, 16)
    assert len(enc.last_weights) == 2 and enc.last_weights[0].shape == (2, 2, 7, 7)
    assert (enc.last_weights[0][1, :, :, 4:] == 0).all()


def test_transformer_post_norm_and_learned_positions_and_errors():
    enc = TransformerEncoder(16, dim=16, layers=1, norm="post", positions="learned", max_len=8)
    assert enc(torch.randn(1, 8, 16), torch.tensor([8])).shape == (1, 8, 16)
    with pytest.raises(ConfigError, match="max_len"):
        enc(torch.randn(1, 9, 16), torch.tensor([9]))
    with pytest.raises(ConfigError, match="encoder.norm"):
        TransformerEncoder(16, norm="middle")
    with pytest.raises(ConfigError, match="encoder.attention.score: unknown score"):
        TransformerEncoder(16, attention={"score": "dott"})


def test_embedding_pad_row_and_pretrained_vectors(tmp_path):
    vec = tmp_path / "vec.txt"
    vec.write_text("3 2\ngood 1.0 2.0\nbad -1 -2\nunused 0 0\n", encoding="utf-8")
    vocab = {"<pad>": 0, "<unk>": 1, "good": 2, "bad": 3}
    table, found = read_vectors(vec, vocab, 2)
    assert found == 2 and torch.isnan(table[1]).all()
    emb = TokenEmbedding(4, 2, pretrained=table, freeze=True)
    assert torch.equal(emb.embed.weight[2], torch.tensor([1.0, 2.0]))
    assert (emb.embed.weight[0] == 0).all() and not emb.embed.weight.requires_grad
    vec.write_text("good 1.0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"vec.txt:1: expected a word and 2 numbers"):
        read_vectors(vec, vocab, 2)
    with pytest.raises(DataError, match="not found"):
        read_vectors(tmp_path / "missing.txt", vocab, 2)


def test_char_cnn_masks_padding_characters():
    torch.manual_seed(0)
    cnn = CharCNN(20, char_dim=4, channels=6)
    chars = torch.tensor([[[3, 4, 5, 0, 0], [0, 0, 0, 0, 0]]])
    out = cnn(chars)
    assert out.shape == (1, 2, 6) and (out[0, 1] == 0).all()
    wider = torch.cat([chars, torch.zeros(1, 2, 3, dtype=torch.long)], -1)
    assert torch.allclose(cnn(wider), out, atol=1e-6)


def test_heads_losses_match_torch():
    torch.manual_seed(0)
    head = ClassificationHead(6, 3, label_smoothing=0.1)
    x, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    logits = head(x)
    assert torch.allclose(head.loss(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1))
    tok = TokenClassificationHead(6, 5)
    h = torch.randn(2, 3, 6)
    tags = torch.tensor([[1, 2, -100], [4, -100, -100]])
    lt = tok(h)
    manual = F.cross_entropy(torch.stack([lt[0, 0], lt[0, 1], lt[1, 0]]), torch.tensor([1, 2, 4]))
    assert torch.allclose(tok.loss(lt, tags), manual)
    mask = tags != -100
    assert (tok.predict(lt, mask)[~mask] == -100).all()
    crf_head = TokenClassificationHead(6, 5, crf=True)
    assert torch.isfinite(crf_head.loss(crf_head(h), tags, mask))
    assert crf_head.predict(crf_head(h), mask).shape == (2, 3)
