"""Explanations of fine-tuned backbones: their own attentions (checked against a float64
recomputation from the query/key projections), word pieces summed into words, and the same
attributions from the fast path as from the transformers forward."""
import numpy as np
import pytest
import torch

from attnkit.explain import explain
from attnkit.finetune.encoder import BackboneEncoder
from attnkit.finetune.backbones import load_backbone
from attnkit.run import load_run, train

from .conftest import transformers
from .test_run import config


@pytest.fixture(scope="module")
def lora_run(tiny_bert, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    rows = [f"{t}\t1" for t in ["good film", "great fun"]] * 8 + [f"{t}\t0" for t in ["bad film", "awful"]] * 8
    (data / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (data / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows[::4]) + "\n")
    cfg = config(tiny_bert, data, "lora", pooler={"type": "attention"})
    cfg["train"]["epochs"] = 2
    out = tmp_path_factory.mktemp("run") / "run"
    train(cfg, out=out, progress=False)
    return out


@pytest.mark.parametrize("lengths", [[6], [6, 3, 1]])
def test_backbone_attentions_are_softmax_of_scaled_query_key(tiny_bert, lengths):
    model = load_backbone(str(tiny_bert))[0].eval()
    enc = BackboneEncoder(model)
    lengths = torch.tensor(lengths)
    mask = torch.arange(6) < lengths[:, None]
    ids = torch.randint(5, 20, (len(lengths), 6)) * mask  # [PAD] (id 0) beyond each length
    got = enc.attentions(ids, lengths)
    hidden = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states
    assert len(got) == len(model.encoder.layer)
    for layer, h, a in zip(model.encoder.layer, hidden, got):
        sa = layer.attention.self
        heads, d = sa.num_attention_heads, sa.attention_head_size
        q = sa.query(h).double().view(*h.shape[:2], heads, d).transpose(1, 2)
        k = sa.key(h).double().view(*h.shape[:2], heads, d).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) / d ** 0.5
        want = torch.softmax(s.masked_fill(~mask[:, None, None, :], float("-inf")), -1)
        torch.testing.assert_close(a.double(), want, rtol=1e-4, atol=1e-6)
        assert float(a.masked_select(~mask[:, None, None, :]).abs().sum()) == 0.0


def test_pieces_are_summed_into_words_and_attention_flows_through_rollout(lora_run):
    run = load_run(lora_run)
    [e] = explain(run, ["an unbelievable film"], method="saliency")
    assert e.tokens == ["an", "unbelievable", "film"]
    assert e.pieces[:2] == ["[CLS]", "[UNK]"] and e.pieces[-1] == "[SEP]" and "##believ" in e.pieces
    by_word = {0: [1], 1: [2, 3, 4], 2: [5]}
    np.testing.assert_allclose(e.scores, [e.piece_scores[p].sum() for p in by_word.values()], rtol=1e-5)
    [a] = explain(run, ["an unbelievable film"], method="attention")
    layers = a.attention["layers"]
    assert layers.shape == (3, 4, 7, 7)  # the tiny BERT: 3 layers x 4 heads over 7 pieces
    np.testing.assert_allclose(a.piece_scores, a.attention["pooling"].mean(0) @ a.attention["rollout"], rtol=1e-5)


def test_fast_path_and_transformers_forward_give_the_same_attributions(lora_run):
    run = load_run(lora_run)
    texts = ["good film", "a great plot and bad acting"]
    fast = explain(run, texts, method="ig", steps=16)
    assert run.model.encoder.fast
    run.model.encoder.fast = False
    slow = explain(run, texts, method="ig", steps=16)
    for f, s in zip(fast, slow):
        np.testing.assert_allclose(f.piece_scores, s.piece_scores, rtol=1e-4, atol=1e-6)


def test_report_of_a_fine_tuned_run(lora_run):
    page = (lora_run / "report.html").read_text(encoding="utf-8")
    assert "pretrained" in page and 'alt="attention grid"' in page and "gradient x input:" in page


def test_default_cls_pooler_uses_the_rollout_row_of_cls(tiny_bert, tmp_path):
    data = tmp_path
    rows = ["good film\t1", "bad film\t0"] * 4
    (data / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (data / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    cfg = config(tiny_bert, data, "full")
    cfg["train"].update(epochs=1, report=False)
    train(cfg, out=tmp_path / "run", progress=False)
    [e] = explain(tmp_path / "run", ["good film"])
    np.testing.assert_allclose(e.piece_scores, e.attention["rollout"][0], rtol=1e-6)
    assert "pooling" not in e.attention
    assert transformers is not None
