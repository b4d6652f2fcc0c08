"""Encoder-decoder models and decoding: cached one-step decoding equals recomputing the whole
prefix, beam size 1 equals greedy search, a beam as wide as the search space equals exhaustive
search (scored by an independent teacher-forced pass), and the length/n-gram limits hold."""
import itertools
import math

import pytest
import torch

from attnkit.attention import Attention, MultiHeadAttention
from attnkit.models import ModelConfig, SearchConfig, Translator, beam_search, greedy
from attnkit.models.search import length_penalty

PAD, BOS, EOS = 0, 2, 3

CONFIGS = {
    "transformer": ModelConfig(embedding={"dim": 16}, encoder={"type": "transformer", "layers": 2, "dim": 16,
                                                               "dropout": 0.0, "attention": {"heads": 2}},
                               decoder={"type": "transformer", "layers": 2, "dropout": 0.0,
                                        "attention": {"heads": 2}}),
    "gru_additive": ModelConfig(embedding={"dim": 12}, encoder={"type": "gru", "hidden": 8},
                                decoder={"type": "gru", "hidden": 10, "dropout": 0.0,
                                         "attention": {"score": "additive", "hidden": 7}}),
    "lstm_general": ModelConfig(embedding={"dim": 12}, encoder={"type": "lstm", "hidden": 8},
                                decoder={"type": "lstm", "hidden": 10, "layers": 2, "dropout": 0.0,
                                         "attention": {"score": "general"}}),
}


def model_of(name: str, vocab: int = 11, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    m = Translator(CONFIGS[name], vocab, PAD, BOS, EOS).double().eval()
    with torch.no_grad():  # a spread-out output distribution where </s> is not the first choice everywhere
        if not m.transformer:
            m.out.weight.mul_(4.0)
        m.out.weight[EOS] = 0.0
    return m


def source_batch(lengths, vocab: int = 11, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return {"src": src, "src_lengths": torch.tensor(lengths)}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_steps_equal_the_whole_prefix_at_once(name):
    m = model_of(name)
    batch = source_batch([5, 3, 7])
    g = torch.Generator().manual_seed(2)
    tgt_in = torch.cat([torch.full((3, 1), BOS), torch.randint(4, 11, (3, 5), generator=g)], 1)
    full = m({**batch, "tgt_in": tgt_in}, need_weights=True)
    state = m.start(batch)
    for t in range(tgt_in.shape[1]):
        logp, state, w = m.step(tgt_in[:, t], state, need_weights=True)
        torch.testing.assert_close(logp, torch.log_softmax(full["logits"][:, t], -1), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(w, full["cross_attention"][:, t], rtol=1e-9, atol=1e-9)
    # attention over the source only: padded source positions get no weight
    assert float(full["cross_attention"][1, :, 3:].detach().abs().max()) == 0.0


def test_cross_attention_rows_are_distributions():
    m = model_of("transformer")
    w = m({**source_batch([4, 6]), "tgt_in": torch.tensor([[BOS, 5, 6], [BOS, 7, 8]])},
          need_weights=True)["cross_attention"]
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, dtype=w.dtype))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_beam_of_one_is_greedy(name):
    m = model_of(name)
    batch = source_batch([2, 5, 3, 6, 4], seed=3)
    cfg = SearchConfig(beam=1, alpha=0.6, max_len_a=1.0, max_len_b=4)
    g = greedy(m, batch, cfg)
    b = beam_search(m, batch, cfg)
    assert [h.tokens for h in g] == [hs[0].tokens for hs in b]
    assert any(len(h.tokens) > 1 for h in g)


def sequence_logprob(m: Translator, batch: dict, i: int, seq: list[int]) -> float:
    """log P(seq | source i) from one teacher-forced pass (not the step API)."""
    one = {"src": batch["src"][i:i + 1, :int(batch["src_lengths"][i])], "src_lengths": batch["src_lengths"][i:i + 1],
           "tgt_in": torch.tensor([[BOS, *seq[:-1]]])}
    with torch.no_grad():
        logp = torch.log_softmax(m(one)["logits"][0], -1)
    return float(sum(logp[t, tok] for t, tok in enumerate(seq)))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_is_exhaustive_search(alpha):
    vocab, max_len = 6, 4  # every sequence of non-</s> tokens of length <= 3, then </s>: 1 + 5 + 25 + 125
    m = model_of("gru_additive", vocab=vocab, seed=4)
    batch = source_batch([3, 2], vocab=vocab, seed=5)
    others = [t for t in range(vocab) if t != EOS]
    space = [list(p) + [EOS] for n in range(max_len) for p in itertools.product(others, repeat=n)]
    cfg = SearchConfig(beam=len(space), alpha=alpha, max_len_a=0.0, max_len_b=max_len, nbest=3)
    found = beam_search(m, batch, cfg)
    for i in range(2):
        scored = sorted(((sequence_logprob(m, batch, i, s) / length_penalty(len(s), alpha), s) for s in space),
                        key=lambda x: -x[0])
        assert [h.tokens for h in found[i]] == [s for _, s in scored[:3]]
        for h, (score, _) in zip(found[i], scored):
            assert math.isclose(h.score, score, rel_tol=1e-9, abs_tol=1e-9)


def test_length_limit_and_no_repeat_ngram():
    m = model_of("gru_additive", seed=6)
    batch = source_batch([2, 6], seed=7)
    for search in (greedy, beam_search):
        cfg = SearchConfig(beam=3, max_len_a=1.0, max_len_b=3, no_repeat_ngram=2, nbest=2)
        out = search(m, batch, cfg)
        hyps = [[h] for h in out] if search is greedy else out
        for i, n in enumerate([2, 6]):
            for h in hyps[i]:
                assert len(h.tokens) <= n + 3 and h.tokens[-1] == EOS
                grams = [tuple(h.tokens[j:j + 2]) for j in range(len(h.tokens) - 2)]  # </s> ends it
                assert len(grams) == len(set(grams)), h.tokens


def test_beam_search_returns_nbest_sorted_and_attention():
    m = model_of("transformer", seed=8)
    batch = source_batch([4, 5], seed=9)
    out = beam_search(m, batch, SearchConfig(beam=4, nbest=3), need_weights=True)
    for hs, n in zip(out, [4, 5]):
        assert len(hs) == 3 and [h.score for h in hs] == sorted((h.score for h in hs), reverse=True)
        for h in hs:
            assert h.attention.shape == (len(h.tokens), 5)
            assert float(h.attention[:, n:].abs().sum()) == 0.0
            torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens), dtype=h.attention.dtype))
            assert math.isclose(h.logprob, sequence_logprob(m, batch, out.index(hs), h.tokens), rel_tol=1e-9)


@pytest.mark.parametrize("score", ["additive", "general", "mlp", "dot", "cosine"])
def test_prepared_keys_give_the_same_attention(score):
    att = Attention(6, 6, score=score).double()
    q, k = torch.randn(3, 2, 6, dtype=torch.float64), torch.randn(3, 5, 6, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    want, ww = att(q, k, lengths=lengths, need_weights=True)
    kf = att.score.prepare_keys(k.unsqueeze(1))
    got, wg = att(q, k, lengths=lengths, need_weights=True, kf=kf)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(wg, ww)
    # and from the formula for the additive score: v . tanh(Wq q + Wk k)
    if score == "additive":
        s = att.score
        pre = s.w_q(q)[:, :, None] + s.w_k(k)[:, None]
        e = (torch.tanh(pre) @ s.v.weight.T)[..., 0]
        e = e.masked_fill(torch.arange(5)[None, None] >= lengths[:, None, None], -float("inf"))
        torch.testing.assert_close(wg, torch.softmax(e, -1))


def test_multi_head_attention_with_given_keys_and_values():
    mha = MultiHeadAttention(8, 2).double()
    x, ctx = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    want, _ = mha(x, ctx, lengths=torch.tensor([5, 3]))
    got, _ = mha(x, kv=mha.project_kv(ctx), lengths=torch.tensor([5, 3]))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("cfg,message", [
    (ModelConfig(decoder={"type": "transformer", "attention": {"mask": ["causal"]}}),
     "decoder.attention.mask: the decoder's self-attention is causal by construction"),
    (ModelConfig(embedding={"dim": 16}, encoder={"type": "gru", "hidden": 8},
                 decoder={"type": "gru", "hidden": 12}, head={"tie": True}),
     "model.head.tie: the decoder's output (12) and the embedding (16) differ in size"),
    (ModelConfig(embedding={"dim": 16, "vectors": "x.txt"}), "model.embedding: unknown key(s) 'vectors'"),
    (ModelConfig(head={"label_smoothing": 1.5}), "model.head.label_smoothing: must be in [0, 1)"),
    (ModelConfig(decoder={"type": "gru", "attention": {"score": "nope"}}), "unknown score 'nope'"),
])
def test_model_config_errors_name_the_key(cfg, message):
    from attnkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Translator(cfg, 20)


def test_untied_recurrent_model_and_separate_target_embedding():
    cfg = ModelConfig(embedding={"dim": 16, "shared": False}, encoder={"type": "gru", "hidden": 8},
                      decoder={"type": "gru", "hidden": 12}, head={"tie": False})
    m = Translator(cfg, 20)
    assert m.tgt_embedding is not m.embedding and m.out.weight.shape == (20, 12)
    out = m({"src": torch.tensor([[5, 6, 7]]), "src_lengths": torch.tensor([3]), "tgt_in": torch.tensor([[BOS, 8]]),
             "tgt_out": torch.tensor([[8, EOS]])})
    assert out["logits"].shape == (1, 2, 20) and torch.isfinite(m.loss(out, {"tgt_out": torch.tensor([[8, EOS]])}))


def test_decoder_blocks_take_their_options_and_name_themselves_in_errors():
    import warnings

    from attnkit.errors import ConfigError
    from attnkit.nn.decoders import RNNDecoder, TransformerDecoder

    dec = RNNDecoder(dim=8, memory_dim=6, hidden=10, attention={"score": "additive", "hidden": 7})
    assert dec.attn.score.w_q.out_features == 7  # the attention's own options reach it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one layer: no dropout between layers, and no warning about it
        RNNDecoder(dim=8, memory_dim=6, hidden=10, layers=1, dropout=0.3)
    with pytest.raises(ConfigError, match=r"^decoder.dim: must be > 0, got 0"):
        TransformerDecoder(dim=0)
    with pytest.raises(ConfigError, match=r"^decoder.attention: unknown key"):
        TransformerDecoder(dim=8, attention={"nonsense": 1})
