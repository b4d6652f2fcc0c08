"""Adversarial training and the PGD attack on token embeddings, checked against float64
computations written from the definitions (FGM's r = eps g / ||g||, projection onto the L2
ball), plus what they must do: PGD raises the loss within its radius, training with them
still learns, an attack of radius 0 changes nothing, image models are refused."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toydata import ToyText, toy_model

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.evaluate import evaluate_model
from attnkit.evaluate.robustness import attacked_predictions
from attnkit.tasks import get_task
from attnkit.train import TrainConfig, Trainer
from attnkit.train.adversarial import Adversary, AdversarialConfig, EmbeddingShift, pgd_delta, per_example_unit, project


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 7), (1, 2, 3, 4)])
def test_unit_and_projection_match_float64(shape):
    g = torch.randn(shape, dtype=torch.float64)
    g[0] = 0  # a zero gradient stays zero
    flat = g.reshape(shape[0], -1)
    want = torch.stack([row / row.norm() if row.norm() > 0 else row for row in flat]).reshape(shape)
    torch.testing.assert_close(per_example_unit(g), want)
    r = torch.randn(shape, dtype=torch.float64) * 3
    eps = 1.5
    want = torch.stack([row * min(1.0, eps / float(row.norm())) for row in r.reshape(shape[0], -1)]).reshape(shape)
    torch.testing.assert_close(project(r, eps), want)
    assert (project(r, eps).reshape(shape[0], -1).norm(dim=1) <= eps + 1e-9).all()


def _embedding_gradient(model, batch) -> torch.Tensor:
    """d loss / d embeddings, computed without attnkit's shift: the embeddings are computed by hand,
    made a leaf, and fed on through a forward hook that replaces the layer's output."""
    emb = model.embedding_layer()(batch["tokens"]).detach().double().float().requires_grad_(True)
    handle = model.embedding_layer().register_forward_hook(lambda m, i, o: emb)
    try:
        loss = model.loss(model(batch), batch)
        (g,) = torch.autograd.grad(loss, emb)
    finally:
        handle.remove()
    return g


def test_fgm_moves_the_embeddings_by_eps_along_the_gradient():
    model = toy_model(dropout=0.0).eval()
    batch = ToyText(6, seed=4).collate(list(range(6)))
    adversary = Adversary(AdversarialConfig(method="fgm", epsilon=0.7), model)
    with adversary.probe():
        loss = model.loss(model(batch), batch)
    loss.backward()
    g = _embedding_gradient(model, batch)
    torch.testing.assert_close(adversary.shift.delta.grad, g, atol=1e-6, rtol=1e-5)
    seen = {}
    clean_emb = model.embedding_layer()(batch["tokens"]).detach()
    # what the encoder reads: the embeddings after the shift (hooks on the layer itself run before it)
    hook = model.encoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("out", args[0].detach()))
    adversary.loss(model, model, model.loss, batch)
    hook.remove()
    r = seen["out"] - clean_emb
    want = 0.7 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(r, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("eps", [0.1, 0.5, 2.0])
def test_pgd_raises_the_loss_within_its_radius(eps):
    model = toy_model(dropout=0.0).eval()
    batch = ToyText(8, seed=5).collate(list(range(8)))
    shift = EmbeddingShift(model)
    with shift.shifted(probe=True):
        clean = model.loss(model(batch), batch)
    (g,) = torch.autograd.grad(clean, shift.delta)
    r = pgd_delta(shift, lambda: model.loss(model(batch), batch), g, eps, steps=5)
    assert (r.flatten(1).norm(dim=1) <= eps * (1 + 1e-5)).all()
    with torch.no_grad(), shift.shifted(r):
        attacked = model.loss(model(batch), batch)
    with torch.no_grad(), shift.shifted(eps * per_example_unit(g)):
        fgm = model.loss(model(batch), batch)
    assert attacked > clean and fgm > clean
    params = [p.grad for p in model.parameters()]
    assert all(p is None for p in params)  # the attack touches no parameter's gradient


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_training_with_an_adversary_still_learns(tmp_path, method):
    cfg = from_dict(TrainConfig, {"epochs": 4, "batch_size": 16, "seed": 7, "optimizer": {"name": "adamw", "lr": 0.01},
                                  "adversarial": {"method": method, "epsilon": 0.05, "steps": 2}}, "train")
    model = toy_model()
    trainer = Trainer(model, ToyText(300, seed=1), ToyText(80, seed=2), cfg, tmp_path,
                      lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=False)
    best = trainer.fit()
    assert best["accuracy"] >= 0.85, best


def test_an_attack_of_radius_zero_changes_nothing_and_a_large_one_hurts(tmp_path):
    model = toy_model(dropout=0.0)
    torch.manual_seed(0)
    trainer = Trainer(model, ToyText(300, seed=1), ToyText(80, seed=2),
                      from_dict(TrainConfig, {"epochs": 4, "batch_size": 16, "seed": 7,
                                              "optimizer": {"name": "adamw", "lr": 0.01}}, "train"),
                      tmp_path,
                      lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=False)
    trainer.fit()
    task, data = get_task("text_classification"), ToyText(80, seed=2)
    clean = evaluate_model(model, data, ["no", "yes"])["accuracy"]
    p0, gold = attacked_predictions(model, task, data, epsilon=0.0)
    assert sum(int(p.argmax()) == y for p, y in zip(p0, gold)) / len(gold) == pytest.approx(clean)
    p1, gold = attacked_predictions(model, task, data, epsilon=5.0)
    assert sum(int(p.argmax()) == y for p, y in zip(p1, gold)) / len(gold) < clean


def test_models_without_token_embeddings_are_refused():
    from attnkit.models import ModelConfig

    cfg = from_dict(ModelConfig, {"encoder": {"type": "image_cnn"}})
    image = get_task("image_classification").build_model(cfg, in_channels=1, num_classes=3)
    with pytest.raises(ConfigError, match="no token embedding layer"):
        Adversary(AdversarialConfig(method="fgm"), image)


def test_cli_trains_with_fgm_and_scores_under_attack(tmp_path, text_files_s):
    import yaml

    from tests.fuzz.contract import invoke

    text_files = text_files_s
    cfg = {"data": {"train": str(text_files["train"]), "dev": str(text_files["dev"]), "text_column": "sentence"},
           "model": {"embedding": {"dim": 8}, "encoder": {"type": "gru", "hidden": 8}},
           "train": {"epochs": 1, "batch_size": 8, "report": False, "adversarial": {"method": "fgm", "epsilon": 0.1}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = invoke(["train", path, "--out", tmp_path / "run"])
    assert out.kind == "result", out.err
    out = invoke(["evaluate", tmp_path / "run", "--data", text_files["dev"], "--attack", "pgd", "--epsilon", "0.5"])
    assert out.kind == "result" and "under attack: PGD on the token embeddings: 10 steps, L2 radius 0.5" in out.out
    assert (tmp_path / "run" / f"eval-{text_files['dev'].name}-pgd0.5.json").is_file()
    bad = invoke(["evaluate", tmp_path / "run", "--data", text_files["dev"], "--attack", "fgsm"])
    assert bad.kind == "clean_error" and "unknown attack 'fgsm'; known: pgd" in bad.err
    bad = invoke(["train", path, "--out", tmp_path / "run2", "--set", "train.adversarial.method=free"])
    assert bad.kind == "clean_error" and "train.adversarial.method" in bad.err
