"""The masked language model: its loss against a float64 computation written from the
formula (head and cross-entropy by hand over the encoder's output), gradients, weight tying,
and predictions read only where pieces are masked."""
import math

import pytest
import torch

from attnkit.config import from_dict
from attnkit.data.masked_text import IGNORE
from attnkit.models import MaskedLanguageModel, ModelConfig

V, MASK = 40, 4


def model_of(dim=16, emb=None, encoder="transformer", first_ordinary=0):
    enc = {"type": encoder, "dim": dim, "layers": 1, "attention": {"heads": 2}, "dropout": 0.0} \
        if encoder == "transformer" else {"type": encoder, "hidden": dim // 2}
    cfg = from_dict(ModelConfig, {"embedding": {"dim": emb or dim}, "encoder": enc})
    return MaskedLanguageModel(cfg, vocab_size=V, mask_id=MASK, first_ordinary=first_ordinary)


def batch_of(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, t + 1, (b,), generator=g)
    lengths[0] = t
    tokens = torch.randint(5, V, (b, t), generator=g) * (torch.arange(t)[None] < lengths[:, None])
    targets = torch.full_like(tokens, IGNORE)
    for i in range(b):
        picks = torch.randperm(int(lengths[i]), generator=g)[:max(1, int(lengths[i]) // 3)]
        targets[i, picks] = tokens[i, picks]
        tokens[i, picks] = MASK
    return {"tokens": tokens, "lengths": lengths, "targets": targets}


def reference_loss(model, batch, first_ordinary=0):
    """Cross-entropy of the MLM head written out in float64: LayerNorm(GELU(W1 h + b1)) E^T + b,
    over the ordinary pieces only (ids >= first_ordinary)."""
    with torch.no_grad():
        h = model.encoder(model.embedding(batch["tokens"]), batch["lengths"]).double()
    t = model.head.transform
    w1, b1 = t[0].weight.double(), t[0].bias.double()
    ln_w, ln_b, eps = t[2].weight.double(), t[2].bias.double(), t[2].eps
    dec_w, dec_b = model.head.decoder.weight.double(), model.head.decoder.bias.double()
    total, n = 0.0, 0
    b, tl = batch["tokens"].shape
    w1, b1, ln_w, ln_b, dec_w, dec_b = (x.detach() for x in (w1, b1, ln_w, ln_b, dec_w, dec_b))
    for i in range(b):
        for j in range(tl):
            gold = int(batch["targets"][i, j])
            if gold == IGNORE:
                continue
            x = w1 @ h[i, j] + b1
            x = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))  # exact GELU
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * ln_w + ln_b
            logits = (dec_w @ x + dec_b)[first_ordinary:]
            total += float(torch.logsumexp(logits, 0) - logits[gold - first_ordinary])
            n += 1
    return total / n


@pytest.mark.parametrize("b,t,dim,emb,first", [(1, 5, 16, None, 0), (3, 9, 16, None, 5), (4, 17, 24, 12, 0),
                                               (2, 12, 16, None, 5)])
def test_loss_matches_the_formula_in_float64(b, t, dim, emb, first):
    torch.manual_seed(b + t)
    model = model_of(dim, emb, first_ordinary=first).eval()
    batch = batch_of(b, t, seed=t)
    out = model(batch)
    assert out["logits"].shape == (int((batch["targets"] != IGNORE).sum()), V)  # only the predicted positions
    assert model.loss(out, batch).item() == pytest.approx(reference_loss(model, batch, first), abs=1e-5)
    if first:  # special pieces are never predicted, and the tied padding row learns nothing through the head
        assert model.predict(out).min() >= first
        model.loss(out, batch).backward()
        assert model.embedding.embed.weight.grad[0].abs().max() == 0


def test_weights_are_tied_when_widths_agree():
    tied, untied = model_of(16), model_of(16, emb=8)
    assert tied.head.decoder.weight is tied.embedding.embed.weight
    assert untied.head.decoder.weight is not untied.embedding.embed.weight
    assert untied.head.decoder.weight.shape == (V, 16)


def test_gradients_by_finite_differences():
    torch.manual_seed(0)
    model = model_of(8).double().eval()
    batch = batch_of(2, 6, seed=1)
    where = batch["targets"] != IGNORE
    x = torch.randn(int(where.sum()), 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: model.loss({"logits": model.head(h), "where": where}, batch), (x,))
    model.loss(model(batch), batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if p.requires_grad and ("embedding" in n or "encoder" in n or "head" in n))


def test_without_targets_it_predicts_at_the_mask_pieces_and_any_encoder_works():
    for encoder in ("transformer", "lstm"):
        model = model_of(16, encoder=encoder).eval()
        tokens = torch.tensor([[7, MASK, 9, MASK, 0], [MASK, 8, 0, 0, 0]])
        out = model({"tokens": tokens, "lengths": torch.tensor([4, 2])})
        assert out["where"].sum() == 3 and model.predict(out).shape == (3,)
