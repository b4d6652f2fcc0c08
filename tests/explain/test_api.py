"""``explain(run, inputs, method)`` on trained runs of every task, and ``attnkit explain``."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.explain import ExplainError, explain, rollout
from attnkit.models import ModelConfig
from attnkit.tasks import build_model
from attnkit.run import load_run
from attnkit.run import predict

TEXT = "the film was very good"


@pytest.mark.parametrize("method", ["attention", "saliency", "ig"])
def test_text_run_explanations_per_word_agree_with_predict(text_run, method):
    [e] = explain(text_run, [TEXT], method=method, steps=20)
    p = predict(text_run, [TEXT])[0]
    assert e.tokens == TEXT.split() and e.scores.shape == (5,) and e.scores.dtype == np.float32
    assert e.label == p["label"] and e.probability == pytest.approx(max(p["scores"].values()), abs=1e-4)
    assert e.target == e.label
    if method == "attention":  # BiLSTM + pooling: the pooling weights, mean over its 2 heads
        assert e.attention["pooling"].shape == (2, 5) and "layers" not in e.attention
        np.testing.assert_allclose(e.scores, e.attention["pooling"].mean(0), rtol=1e-6)
        assert e.scores.sum() == pytest.approx(1.0, abs=1e-5)
    assert json.loads(json.dumps(e.to_dict()))["tokens"] == e.tokens


def test_the_word_the_task_depends_on_gets_the_evidence(text_run):
    """Label 'pos' iff 'good' occurs: integrated gradients put the most evidence on it."""
    e = explain(text_run, [TEXT, "a good movie was the plot"], method="ig", target="pos")
    assert [x.tokens[int(np.argmax(x.scores))] for x in e] == ["good", "good"]


def test_target_changes_the_sign_of_the_evidence(text_run):
    pos, neg = explain(text_run, [TEXT], method="saliency", target="pos")[0], \
        explain(text_run, [TEXT], method="saliency", target="neg")[0]
    assert pos.target == "pos" and neg.target == "neg"
    assert np.sign(pos.scores[4]) == -np.sign(neg.scores[4])  # two classes: p(neg) = 1 - p(pos)


def test_transformer_run_attention_is_pooling_through_rollout(transformer_run):
    run = load_run(transformer_run)
    [e] = explain(run, [TEXT])
    layers = e.attention["layers"]
    assert layers.shape == (2, 2, 5, 5)
    want = e.attention["pooling"].mean(0) @ rollout([torch.from_numpy(a[None]) for a in layers])[0].numpy()
    np.testing.assert_allclose(e.scores, want, rtol=1e-5)
    np.testing.assert_allclose(e.attention["rollout"].sum(-1), 1.0, rtol=1e-5)


def test_tagger_explains_one_words_tag(tagger_run):
    text = "mr Smith went to Paris"
    [e] = explain(tagger_run, [text], method="saliency")
    assert e.word == 1 and e.target == "B-PER"  # default: the first word tagged as an entity
    [e] = explain(tagger_run, [text], method="attention", word=4)
    assert e.word == 4 and e.scores.shape == (5,)
    np.testing.assert_allclose(e.scores, e.attention["rollout"][4], rtol=1e-6)
    with pytest.raises(ExplainError, match="word: 9 is out of range"):
        explain(tagger_run, [text], word=9)


@pytest.mark.parametrize("method", ["attention", "saliency", "ig"])
def test_image_run_scores_per_pixel(image_run, method):
    run = load_run(image_run)
    image = np.zeros((12, 12), dtype=np.uint8)
    image[6:9] = 240  # class 2: a bright band on rows 6-8
    [e] = explain(run, image, method=method, steps=16)
    assert e.scores.shape == (12, 12) and e.tokens == [] and e.image.shape == (12, 12)
    if method == "attention":
        assert e.attention["grid"].shape == (3, 3)
        assert e.scores.sum() == pytest.approx(16.0, rel=1e-5)  # 9 cells of 4x4 pixels, weights sum to 1


def test_bare_model_with_a_batch():
    torch.manual_seed(0)
    model = build_model("text_classification", ModelConfig(embedding={"dim": 8}), vocab_size=10, num_classes=2)
    batch = {"tokens": torch.tensor([[3, 4, 5], [6, 7, 0]]), "lengths": torch.tensor([3, 2])}
    es = explain(model, batch, method="saliency")
    assert [e.tokens for e in es] == [["3", "4", "5"], ["6", "7"]]
    assert [e.label for e in es] == [str(i) for i in model(batch)["logits"].argmax(-1).tolist()]


def test_clear_errors():
    torch.manual_seed(0)
    cnn = build_model("text_classification", ModelConfig(embedding={"dim": 8}, encoder={"type": "textcnn"},
                                                         pooler={"type": "max"}), vocab_size=10, num_classes=2)
    batch = {"tokens": torch.tensor([[3, 4, 5]]), "lengths": torch.tensor([3])}
    with pytest.raises(ExplainError, match="computes no attention weights.*saliency or ig"):
        explain(cnn, batch, method="attention")
    with pytest.raises(ExplainError, match="unknown 'shap'; known: attention, saliency, ig"):
        explain(cnn, batch, method="shap")
    with pytest.raises(ExplainError, match="inputs must be a batch dict"):
        explain(cnn, ["raw text"])


def test_cli_explain_prints_tokens_writes_html_and_json(text_run, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["explain", str(text_run), TEXT, "--method", "ig", "--steps", "8", "--html",
                            str(tmp_path / "e.html")])
    assert r.exit_code == 0, r.output
    assert "explaining" in r.output and "good +" in r.output
    page = (tmp_path / "e.html").read_text()
    assert page.count('class="tok"') == 5 and "http" not in page
    r = runner.invoke(app, ["explain", str(text_run), TEXT, "--json"])
    row = json.loads(r.output.splitlines()[0])
    assert row["text"] == TEXT and len(row["scores"]) == 5 and row["method"] == "attention"


def test_cli_explain_errors_are_one_line(text_run):
    r = subprocess.run([sys.executable, "-c", "from attnkit.cli import run; run()", "explain", str(text_run), TEXT,
                        "--target", "maybe"], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: target: unknown label 'maybe'; known: neg, pos"]


def test_image_run_refuses_text_with_a_pointer(image_run):
    with pytest.raises(ExplainError, match="an image run takes images"):
        explain(image_run, ["a photo of a seven"])


def test_explaining_leaves_a_training_model_in_training_mode(text_run):
    run = load_run(text_run)
    run.model.train()
    explain(run, [TEXT], method="saliency")
    assert run.model.training
