"""Adversarial training and the PGD attack on a fine-tuned backbone (LoRA through PEFT): the
perturbation lands on the word-piece embeddings, FGM's step is epsilon along the gradient
computed independently, only LoRA and the head learn from it, and training still learns."""
import pytest
import torch

from attnkit.evaluate import evaluate_run
from attnkit.rundir import load_run
from attnkit.run import train
from attnkit.tasks import get_task
from attnkit.train.adversarial import AdversarialConfig, Adversary

from .test_run import config, sentiment  # noqa: F401  (fixture)


def _batch(run_dir, data_file):
    run = load_run(run_dir)
    task = get_task(run.cfg.task)
    data = task.encode(run.featurized, task.read_file(run.cfg, data_file))
    return run.model, data.collate(list(range(min(8, len(data)))))


def _grad_at_word_pieces(model, batch):
    """d loss / d word-piece embeddings, without attnkit's shift: the layer's output is replaced
    by a leaf made from the backbone's own embedding matrix."""
    layer = model.embedding_layer()
    leaf = torch.nn.functional.embedding(batch["tokens"], layer.weight.detach()).requires_grad_(True)
    handle = layer.register_forward_hook(lambda m, i, o: leaf)
    try:
        (g,) = torch.autograd.grad(model.loss(model(batch), batch), leaf)
    finally:
        handle.remove()
    return g


def test_fgm_on_a_lora_run_perturbs_the_word_pieces_and_trains_only_lora(tiny_bert, sentiment, tmp_path):
    cfg = config(tiny_bert, sentiment)
    cfg["train"]["adversarial"] = {"method": "fgm", "epsilon": 0.02}
    result = train(cfg, out=tmp_path / "run", progress=False)
    # the random tiny BERT's word pieces are ~0.11 long (std 0.02 x sqrt(32)): a radius of 0.02 over a
    # sentence is a real push, and training still learns through it
    assert result.dev["accuracy"] >= 0.9

    model, batch = _batch(tmp_path / "run", sentiment / "dev.tsv")
    model.eval()
    assert isinstance(model.embedding_layer(), torch.nn.Embedding)
    assert model.embedding_layer().weight.shape[0] == 5 + 23 + 8  # the tiny BERT's word pieces
    g = _grad_at_word_pieces(model, batch)
    model.zero_grad(set_to_none=True)
    adversary = Adversary(AdversarialConfig(method="fgm", epsilon=0.02), model)
    with adversary.probe():
        clean = model.loss(model(batch), batch)
    clean.backward()
    torch.testing.assert_close(adversary.shift.delta.grad, g, atol=1e-6, rtol=1e-4)
    model.zero_grad(set_to_none=True)
    # what the backbone's embedding LayerNorm reads: word pieces + positions + types, with and without the shift
    norm = next(m for m in model.modules() if getattr(m, "word_embeddings", None) is model.embedding_layer()).LayerNorm
    seen = []
    hook = norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model.loss(model(batch), batch)
    adv = adversary.loss(model, model, model.loss, batch)
    hook.remove()
    want = 0.02 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(seen[1] - seen[0], want, atol=1e-5, rtol=1e-4)
    assert adv.item() > clean.item()  # the step is uphill
    adv.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all("lora_" in n or "head" in n or "classifier" in n for n in grads), sorted(grads)
    assert any("lora_" in n for n in grads)


def test_pgd_attack_on_a_lora_run_of_radius_zero_changes_nothing_and_a_large_one_hurts(tiny_bert, sentiment,
                                                                                       tmp_path):
    train(config(tiny_bert, sentiment), out=tmp_path / "run", progress=False)
    dev = sentiment / "dev.tsv"
    clean = evaluate_run(tmp_path / "run", dev)["accuracy"]
    assert evaluate_run(tmp_path / "run", dev, attack=(0.0, 3))["accuracy"] == pytest.approx(clean)
    assert evaluate_run(tmp_path / "run", dev, attack=(20.0, 5))["accuracy"] < clean
