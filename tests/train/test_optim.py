"""Optimisers and schedules."""
import math

import pytest
import torch

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.train import OptimizerConfig, ScheduleConfig, build_optimizer
from attnkit.train.optim import lr_multiplier, param_groups


def test_schedules_follow_their_formulas():
    lin = ScheduleConfig(name="linear", warmup=10)
    assert lr_multiplier(0, 110, lin) == pytest.approx(0.1)
    assert lr_multiplier(9, 110, lin) == pytest.approx(1.0)
    assert lr_multiplier(60, 110, lin) == pytest.approx(0.5)
    cos = ScheduleConfig(name="cosine", warmup=0.0, min_lr_ratio=0.1)
    assert lr_multiplier(50, 100, cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(100, 100, cos) == pytest.approx(0.1)
    frac = ScheduleConfig(name="constant", warmup=0.5)
    assert lr_multiplier(24, 100, frac) == pytest.approx(0.5) and lr_multiplier(50, 100, frac) == 1.0


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_optimizers_and_no_decay_groups(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, from_dict(OptimizerConfig, {"name": name, "weight_decay": 0.01}, "train.optimizer"))
    assert isinstance(opt, cls)
    groups = param_groups(model, 0.01)
    assert [len(g["params"]) for g in groups] == [1, 3]  # only the Linear weight decays


@pytest.mark.parametrize("cfg,message", [
    ({"name": "adagrad"}, "train.optimizer.name: unknown optimizer 'adagrad'; known: adam, adamw, sgd"),
    ({"name": "adam", "nesterov": True}, "train.optimizer.nesterov: needs name: sgd and momentum > 0"),
    ({"lr": 0}, "train.optimizer.lr: must be > 0, got 0.0"),
])
def test_bad_optimizer_config(cfg, message):
    with pytest.raises(ConfigError) as e:
        from_dict(OptimizerConfig, cfg, "train.optimizer")
    assert str(e.value) == message


def _embedding_problem(sparse: bool, rows_used):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(6, 3, sparse=sparse)
    w = torch.randn(3, dtype=torch.float64).float()
    return emb, w, torch.tensor(rows_used)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_lazy_sparse_adam_equals_dense_adam_on_rows_used_every_step(name):
    """Rows every batch uses follow exactly the dense update; rows never used do not move."""
    from attnkit.train.optim import AdamW, OptimizerConfig, build_optimizer

    results = []
    for sparse in (True, False):
        emb, w, rows = _embedding_problem(sparse, [0, 2, 2, 3])
        opt = build_optimizer(emb, OptimizerConfig(name=name, lr=0.1, weight_decay=0.1))
        assert isinstance(opt, torch.optim.Adam if name == "adam" else AdamW)
        for step in range(5):
            opt.zero_grad()
            (emb(rows) @ w).pow(2).sum().backward()
            assert emb.weight.grad.is_sparse == sparse
            opt.step()
        results.append(emb.weight.detach().clone())
    lazy, dense = results
    torch.testing.assert_close(lazy[[0, 2, 3]], dense[[0, 2, 3]], atol=1e-6, rtol=1e-5)
    fresh = _embedding_problem(True, [0])[0].weight
    torch.testing.assert_close(lazy[[1, 4, 5]], fresh[[1, 4, 5]])  # untouched rows stay as they were


def test_lazy_adam_matches_the_formula_in_float64():
    from attnkit.train.optim import AdamW

    p = torch.nn.Parameter(torch.randn(4, 2, dtype=torch.float64))
    start = p.detach().clone()
    opt = AdamW([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    g = torch.randn(2, 2, dtype=torch.float64)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), g, (4, 2), check_invariants=True)
    opt.step()
    m, v = 0.1 * g, 0.01 * g * g
    expected = start.clone()
    expected[[1, 3]] = start[[1, 3]] * (1 - 0.01 * 0.5) - 0.01 * (m / 0.1) / ((v / 0.01).sqrt() + 1e-8)
    torch.testing.assert_close(p.detach(), expected)


def test_clip_grad_norm_counts_sparse_and_dense_gradients():
    from attnkit.train.optim import clip_grad_norm

    a = torch.nn.Parameter(torch.zeros(3, 2))
    b = torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.sparse_coo_tensor(torch.tensor([[0, 0, 2]]), torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 4.0]]),
                                     (3, 2), check_invariants=True)  # row 0 twice: coalesces to 3
    b.grad = torch.tensor([0.0, 0.0])
    total = clip_grad_norm([a, b], 1.0)
    assert float(total) == pytest.approx(5.0)
    assert float(torch.linalg.vector_norm(a.grad.to_dense())) == pytest.approx(1.0, rel=1e-5)
