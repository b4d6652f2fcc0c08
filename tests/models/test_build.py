"""Task models from config mappings: every encoder/pooler combination builds, trains one
step, and bad options fail with the key path."""
import pytest
import torch

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.models import ModelConfig
from attnkit.tasks import build_model
from attnkit.nn import ENCODERS, POOLERS

TEXT_ENCODERS = {"lstm": {"hidden": 8}, "gru": {"hidden": 8, "layers": 2}, "textcnn": {"channels": 4},
                 "transformer": {"dim": 16, "layers": 1, "attention": {"heads": 2}}}


def text_batch(b=3, t=7, vocab=20, classes=3):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([t, 4, 1][:b])
    tokens = torch.randint(2, vocab, (b, t), generator=g) * (torch.arange(t)[None] < lengths[:, None])
    return {"tokens": tokens, "lengths": lengths, "labels": torch.randint(0, classes, (b,), generator=g),
            "tags": torch.randint(0, classes, (b, t), generator=g).masked_fill(tokens == 0, -100)}


def one_step(model, batch):
    out = model(batch)
    loss = model.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    return out


def test_every_text_encoder_and_pooler_builds_and_trains():
    assert set(TEXT_ENCODERS) == set(ENCODERS.names()) - {"image_cnn"}, "new encoder: add its small options here"
    for enc, opts in TEXT_ENCODERS.items():
        for pool in POOLERS.names():
            cfg = from_dict(ModelConfig, {"embedding": {"dim": 12}, "encoder": {"type": enc, **opts},
                                          "pooler": {"type": pool}})
            model = build_model("text_classification", cfg, vocab_size=20, num_classes=3)
            out = one_step(model, text_batch())
            assert out["logits"].shape == (3, 3), (enc, pool)


def test_attention_pooler_exposes_weights_with_any_score():
    cfg = from_dict(ModelConfig, {"embedding": {"dim": 8}, "encoder": {"type": "lstm", "hidden": 4},
                                  "pooler": {"type": "attention", "score": "mlp", "hidden": 8}})
    model = build_model("text_classification", cfg, vocab_size=20, num_classes=2)
    out = model(text_batch(), need_weights=True)
    assert out["attention"].shape == (3, 1, 7)
    assert torch.allclose(out["attention"].sum(-1), torch.ones(3, 1))


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_with_char_features(crf):
    cfg = from_dict(ModelConfig, {"embedding": {"dim": 8}, "chars": {"char_dim": 4, "channels": 5},
                                  "encoder": {"type": "lstm", "hidden": 6}, "head": {"crf": crf}})
    model = build_model("token_classification", cfg, vocab_size=20, num_classes=4, char_vocab_size=30)
    batch = text_batch(classes=4)
    batch["chars"] = torch.randint(1, 30, (3, 7, 5)) * (batch["tokens"] > 0)[..., None]
    out = one_step(model, batch)
    pred = model.predict(out, batch)
    assert pred.shape == (3, 7) and (pred[batch["tokens"] == 0] == -100).all()


def test_image_classifier_cnn_attention_pooling():
    cfg = from_dict(ModelConfig, {"encoder": {"channels": [4, 8]}, "pooler": {"type": "attention"}})
    model = build_model("image_classification", cfg, num_classes=10, in_channels=1)
    batch = {"images": torch.randn(2, 1, 16, 16), "labels": torch.tensor([3, 7])}
    assert one_step(model, batch)["logits"].shape == (2, 10)


@pytest.mark.parametrize("model_cfg,message", [
    ({"encoder": {"type": "lstm", "hidden": -3}}, "model.encoder.hidden: must be > 0, got -3"),
    ({"encoder": {"type": "lstm", "hiden": 3}},
     "model.encoder: unknown key(s) 'hiden' (did you mean 'hidden'?); known: type, hidden, layers"),
    # a pooler passes options on to its score: a typo there is the same one-line error, not a TypeError
    ({"pooler": {"type": "attention", "hiden": 3}},
     "model.pooler: unknown key(s) 'hiden' (did you mean 'hidden'?); known: type, score, heads, hidden"),
    ({"pooler": {"type": "attention", "score": "mlp", "activaton": "relu"}},
     "model.pooler: unknown key(s) 'activaton' (did you mean 'activation'?); known: type, score, heads, hidden, "
     "activation, bias"),
    ({"encoder": {"type": "lsmt"}}, "model.encoder.type: unknown encoder 'lsmt'; known: gru, image_cnn, lstm"),
    ({"encoder": {"type": "lstm", "hidden": "big"}}, "model.encoder.hidden: expected an integer, got 'big'"),
    ({"pooler": {"type": "attention", "score": "dott"}}, "unknown score 'dott'"),
    ({"embedding": {"dim": 0}}, "model.embedding.dim: must be > 0, got 0"),
    ({"encoder": {"type": "transformer", "attention": {"heads": 0}}}, "heads: must be an int > 0"),
])
def test_bad_model_config_names_the_key(model_cfg, message):
    with pytest.raises(ConfigError) as e:
        build_model("text_classification", from_dict(ModelConfig, model_cfg, "model"), vocab_size=10, num_classes=2)
    assert message in str(e.value)


def test_unknown_task():
    with pytest.raises(ConfigError, match="task: unknown task 'summarization'"):
        build_model("summarization", ModelConfig(), num_classes=2)
