"""The RNN's first-layer input projections kept per token (``attnkit.nn.token_rows``): the
encoder's output through them equals the LSTM/GRU equations in float64 over the embedded
tokens; the rows follow the weights; they are used only where the plain path would compute
the same thing unwatched; a model's logits do not change."""
import pytest
import torch

from attnkit.models.classifiers import encode_tokens
from attnkit.nn import GRUEncoder, LSTMEncoder, TokenEmbedding, rnn_kernel, token_rows
from tests.nn.test_rnn_kernel import rnn_reference

needs_kernel = pytest.mark.skipif(rnn_kernel.kernel() is None,
                                  reason=f"fused LSTM/GRU kernel not built here: {rnn_kernel.why_not()}")


def blocks(cell=LSTMEncoder, vocab=50, dim=12, hidden=8, layers=1, bidirectional=True, seed=0):
    torch.manual_seed(seed)
    emb = TokenEmbedding(vocab, dim, dropout=0.3, word_dropout=0.2).eval()
    enc = cell(dim, hidden=hidden, layers=layers, bidirectional=bidirectional, dropout=0.2).eval()
    return emb, enc


def batch(b, t, vocab=50, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    tokens = torch.randint(2, vocab, (b, t), generator=g)
    tokens[torch.arange(t)[None, :] >= lengths[:, None]] = 0  # padding id
    return tokens, lengths


@needs_kernel
@pytest.mark.parametrize("cell", [LSTMEncoder, GRUEncoder])
@pytest.mark.parametrize("b, t, layers, bidirectional", [(1, 1, 1, True), (1, 9, 1, True), (3, 7, 2, True),
                                                          (5, 4, 1, False), (16, 3, 2, False)])
def test_encoding_through_kept_rows_equals_the_equations(cell, b, t, layers, bidirectional):
    emb, enc = blocks(cell, layers=layers, bidirectional=bidirectional)
    with torch.no_grad():
        for seed in (1, 2):  # the second batch reads rows the first one made, and makes new ones
            tokens, lengths = batch(b, t, seed=seed)
            assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is not None
            got = enc.encode_tokens(emb, tokens, lengths)
            want = rnn_reference(enc.rnn, emb.embed.weight[tokens], lengths)
            torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    seen = token_rows._tables[enc.rnn].seen
    assert seen == set(torch.cat([batch(b, t, seed=s)[0].flatten() for s in (1, 2)]).tolist())


@needs_kernel
def test_rows_made_under_inference_mode_grow_under_no_grad():
    emb, enc = blocks()
    (a, la), (b, lb) = batch(2, 5, seed=1), batch(2, 5, seed=2)
    with torch.inference_mode():  # the table is made here (a timing loop, a service)
        enc.encode_tokens(emb, a, la)
    with torch.no_grad():  # then new tokens under no_grad (an evaluation)
        got = enc.encode_tokens(emb, b, lb)
    torch.testing.assert_close(got.double(), rnn_reference(enc.rnn, emb.embed.weight[b], lb), atol=1e-5, rtol=1e-5)


@needs_kernel
def test_the_rows_follow_the_weights():
    emb, enc = blocks()
    tokens, lengths = batch(2, 6)
    with torch.no_grad():
        enc.encode_tokens(emb, tokens, lengths)
        emb.embed.weight.mul_(1.5)  # an optimizer-like in-place step: a new version
        got = enc.encode_tokens(emb, tokens, lengths)
        torch.testing.assert_close(got.double(), rnn_reference(enc.rnn, emb.embed.weight[tokens], lengths),
                                   atol=1e-5, rtol=1e-5)
        enc.rnn.weight_ih_l0.add_(0.25)  # the recurrence's input weights: packed again, rows made again
        got = enc.encode_tokens(emb, tokens, lengths)
        torch.testing.assert_close(got.double(), rnn_reference(enc.rnn, emb.embed.weight[tokens], lengths),
                                   atol=1e-5, rtol=1e-5)
        other = TokenEmbedding(50, 12).eval()  # another table with the same encoder
        got = enc.encode_tokens(other, tokens, lengths)
        torch.testing.assert_close(got.double(), rnn_reference(enc.rnn, other.embed.weight[tokens], lengths),
                                   atol=1e-5, rtol=1e-5)


def _unwatched_plain(emb, enc, tokens, lengths):
    with rnn_kernel.off():  # PyTorch's own LSTM over the module's own embedding call
        return enc(emb(tokens), lengths)


@needs_kernel
def test_not_used_where_the_plain_path_differs_or_is_watched():
    emb, enc = blocks()
    tokens, lengths = batch(2, 5)
    with torch.no_grad():
        assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is not None
        emb.train()  # dropout and word dropout act
        assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is None
        emb.eval()
        handle = emb.register_forward_hook(lambda m, i, out: out * 2)  # attributions hook the embedding
        assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is None
        torch.testing.assert_close(enc.encode_tokens(emb, tokens, lengths), _unwatched_plain(emb, enc, tokens, lengths),
                                   atol=1e-5, rtol=1e-5)
        handle.remove()
        handle = enc.register_forward_pre_hook(lambda m, args: None)
        assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is None
        handle.remove()
        with rnn_kernel.off():
            assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is None
        assert token_rows.first_layer_rows(emb, enc, enc.rnn, torch.zeros(17, 2, dtype=torch.long)) is None  # > MAX_BATCH
    # gradients wanted: the plain path, so autograd sees the embedding and W_ih
    emb.embed.weight.requires_grad_(True)
    assert token_rows.first_layer_rows(emb, enc, enc.rnn, tokens) is None
    with torch.inference_mode():  # weights made here have no version counter: nothing could be kept safely
        made_here, enc_here = blocks()
        assert token_rows.first_layer_rows(made_here, enc_here, enc_here.rnn, tokens) is None
    capped = TokenEmbedding(50, 12).eval()
    capped.embed.max_norm = 1.0  # renormalizes rows as it reads them
    with torch.no_grad():
        assert token_rows.first_layer_rows(capped, enc, enc.rnn, tokens) is None


@needs_kernel
def test_a_token_past_the_vocabulary_is_the_embeddings_own_error():
    emb, enc = blocks()
    tokens, lengths = batch(1, 4)
    tokens[0, 1] = 50
    with torch.no_grad(), pytest.raises(IndexError):
        enc.encode_tokens(emb, tokens, lengths)


@needs_kernel
def test_a_text_classifier_gives_the_same_logits(tmp_path):
    from attnkit.models.classifiers import TextClassifier
    from attnkit.models.model_config import ModelConfig

    cfg = ModelConfig(embedding={"dim": 16}, encoder={"type": "lstm", "hidden": 8}, pooler={"type": "attention"})
    torch.manual_seed(0)
    model = TextClassifier(cfg, vocab_size=40, num_classes=3).eval()
    tokens, lengths = batch(4, 6, vocab=40)
    with torch.no_grad():
        fast = model({"tokens": tokens, "lengths": lengths})["logits"]
        assert token_rows._tables.get(model.encoder.rnn) is not None
        with rnn_kernel.off():
            plain = model({"tokens": tokens, "lengths": lengths})["logits"]
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    # the helper takes encoders without per-token rows too
    mean = torch.nn.Module()
    mean.forward = lambda x, lengths: x.mean(1)
    assert encode_tokens(mean, model.embedding, tokens, lengths).shape == (4, 16)


@needs_kernel
def test_forgetting_the_packed_weights_makes_the_rows_again():
    emb, enc = blocks()
    tokens, lengths = batch(1, 4)
    with torch.no_grad():
        enc.encode_tokens(emb, tokens, lengths)
        emb.embed.weight.data.mul_(2)  # through .data: no version counter sees it
        rnn_kernel.forget(enc.rnn)
        got = enc.encode_tokens(emb, tokens, lengths)
    torch.testing.assert_close(got.double(), rnn_reference(enc.rnn, emb.embed.weight[tokens], lengths),
                               atol=1e-5, rtol=1e-5)
