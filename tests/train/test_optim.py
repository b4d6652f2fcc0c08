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


def test_inverse_sqrt_schedule():
    """Linear warm-up to 1 over ``warmup`` steps, then sqrt(warmup / step) (step counted from 1)."""
    c = ScheduleConfig(name="inverse_sqrt", warmup=400)
    assert lr_multiplier(0, 10_000, c) == pytest.approx(1 / 400)
    assert lr_multiplier(399, 10_000, c) == pytest.approx(1.0)
    assert lr_multiplier(1599, 10_000, c) == pytest.approx(0.5)
    assert lr_multiplier(39_999, 10_000, c) == pytest.approx(0.1)  # no end: it does not depend on the total


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


# --- configuration checks ------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    {"name": "sgd", "momentum": 0.9, "nesterov": True},  # nesterov with sgd and momentum is fine
    {"name": "adam", "betas": [0.0, 0.0]},  # 0 is inside [0, 1)
    {"name": "adamw", "betas": [0.5, 0.999]},
])
def test_good_optimizer_configs_pass_validation(cfg):
    """The boundaries of the nesterov and betas checks: these configurations are accepted."""
    c = from_dict(OptimizerConfig, cfg, "train.optimizer")
    assert c.name == cfg["name"]


@pytest.mark.parametrize("cfg,message", [
    ({"name": "adamw", "momentum": 0.9, "nesterov": True}, "train.optimizer.nesterov: needs name: sgd and momentum > 0"),
    ({"name": "sgd", "momentum": 0.0, "nesterov": True}, "train.optimizer.nesterov: needs name: sgd and momentum > 0"),
    ({"betas": [0.9]}, "train.optimizer.betas: expected two numbers in [0, 1), got [0.9]"),
    ({"betas": [0.9, 0.99, 0.999]}, "train.optimizer.betas: expected two numbers in [0, 1), got [0.9, 0.99, 0.999]"),
    ({"betas": [0.9, 1.0]}, "train.optimizer.betas: expected two numbers in [0, 1), got [0.9, 1.0]"),
    ({"betas": [-0.1, 0.9]}, "train.optimizer.betas: expected two numbers in [0, 1), got [-0.1, 0.9]"),
])
def test_bad_nesterov_and_betas(cfg, message):
    """Nesterov needs sgd *and* momentum > 0; betas must be exactly two numbers in [0, 1)."""
    with pytest.raises(ConfigError) as e:
        from_dict(OptimizerConfig, cfg, "train.optimizer")
    assert str(e.value) == message


def test_validate_defaults_name_the_config_section():
    """Called without a path, ``validate`` names ``train.optimizer`` / ``train.schedule``."""
    with pytest.raises(ConfigError) as e:
        OptimizerConfig(name="adagrad").validate()
    assert str(e.value) == "train.optimizer.name: unknown optimizer 'adagrad'; known: adam, adamw, sgd"
    with pytest.raises(ConfigError) as e:
        ScheduleConfig(name="step").validate()
    assert str(e.value) == "train.schedule.name: unknown schedule 'step'; known: constant, cosine, inverse_sqrt, linear"


def test_schedule_config_validates_its_name():
    """Known schedule names load; an unknown one is a ConfigError naming the key path."""
    for name in ("constant", "linear", "cosine"):
        assert from_dict(ScheduleConfig, {"name": name, "warmup": 5}, "train.schedule").name == name
    with pytest.raises(ConfigError) as e:
        from_dict(ScheduleConfig, {"name": "exp"}, "x.schedule")
    assert str(e.value) == "x.schedule.name: unknown schedule 'exp'; known: constant, cosine, inverse_sqrt, linear"


def test_build_optimizer_rejects_an_unknown_name_it_was_not_validated_for():
    """A config built directly (no ``validate``) with an unknown name fails in ``build_optimizer``
    with the key path; a model without trainable parameters is refused too."""
    with pytest.raises(ConfigError) as e:
        build_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(name="lion"))
    assert str(e.value) == "train.optimizer.name: unknown optimizer 'lion'; known: adam, adamw, sgd"
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError):
        build_optimizer(frozen, OptimizerConfig())


# --- parameter groups ----------------------------------------------------------------------

class _WithMatrixBias(torch.nn.Module):
    """A 2-d parameter called ``bias`` (no decay by name) and a frozen one (not optimised)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.table = torch.nn.Module()
        self.table.bias = torch.nn.Parameter(torch.zeros(2, 3))
        self.table.weight = torch.nn.Parameter(torch.zeros(2, 3))
        self.frozen = torch.nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def test_param_groups_split_decay_by_rank_and_bias_name():
    """Matrices decay; 1-d parameters and any ``*.bias`` (even 2-d) do not; frozen parameters
    are left out; without ``lr_scale`` no group sets its own ``lr``."""
    m = _WithMatrixBias()
    groups = param_groups(m, 0.3, lr=0.01)
    assert len(groups) == 2
    decay, no_decay = groups
    assert set(decay) == {"params", "weight_decay"} and set(no_decay) == {"params", "weight_decay"}
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(m.proj.weight), id(m.table.weight)]
    assert [id(p) for p in no_decay["params"]] == [id(m.proj.bias), id(m.norm.weight), id(m.norm.bias),
                                                   id(m.table.bias)]


class _LayerWise(torch.nn.Module):
    """Layer-wise learning-rate decay: ``lr_scale`` 1 for the head, 0.5 and 0.25 below it."""

    def __init__(self):
        super().__init__()
        self.low = torch.nn.Linear(2, 2)
        self.mid = torch.nn.Linear(2, 2)
        self.head = torch.nn.Linear(2, 2)

    def lr_scale(self, name):
        return {"low": 0.25, "mid": 0.5, "head": 1}[name.split(".")[0]]


def test_param_groups_with_lr_scale():
    """One group per (decay, scale): decayed groups first, each by decreasing scale; a group of
    scale s != 1 gets ``lr * s``, scale 1 keeps the optimiser's lr; without ``lr`` none is set."""
    m = _LayerWise()
    groups = param_groups(m, 0.1, lr=0.2)
    expected = [  # (params, weight decay, lr or None)
        ([m.head.weight], 0.1, None), ([m.mid.weight], 0.1, 0.1), ([m.low.weight], 0.1, 0.05),
        ([m.head.bias], 0.0, None), ([m.mid.bias], 0.0, 0.1), ([m.low.bias], 0.0, 0.05),
    ]
    assert len(groups) == len(expected)
    for g, (params, wd, lr) in zip(groups, expected):
        assert [id(p) for p in g["params"]] == [id(p) for p in params]
        assert g["weight_decay"] == wd
        if lr is None:
            assert "lr" not in g
        else:
            assert g["lr"] == pytest.approx(lr)
    assert all("lr" not in g for g in param_groups(m, 0.1))


def test_build_optimizer_passes_lr_and_weight_decay_to_the_groups():
    """``build_optimizer`` gives each group its scaled lr and the configured decay (0 for biases)."""
    m = _LayerWise()
    opt = build_optimizer(m, OptimizerConfig(name="sgd", lr=0.4, weight_decay=0.02))
    got = [(g["lr"], g["weight_decay"]) for g in opt.param_groups]
    want = [(0.4, 0.02), (0.2, 0.02), (0.1, 0.02), (0.4, 0.0), (0.2, 0.0), (0.1, 0.0)]
    assert got == [pytest.approx(w) for w in want]


# --- optimiser steps against hand-written float64 references ---------------------------------

class _Tiny(torch.nn.Module):
    """A decayed matrix, an undecayed bias and an undecayed norm weight, in float64."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2).double()
        self.norm = torch.nn.LayerNorm(2).double()


def _grads(step, shapes):
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def _run(model, opt, steps=3):
    params = [p for p in model.parameters()]
    for t in range(steps):
        for p, g in zip(params, _grads(t, [p.shape for p in params])):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in params]


def _reference(start, decays, steps, update):
    """Apply ``update(p, g, wd, state, t)`` to copies of the start values, t = 1, 2, ..."""
    ps = [p.clone() for p in start]
    states = [{} for _ in ps]
    for t in range(steps):
        for i, g in enumerate(_grads(t, [p.shape for p in ps])):
            ps[i] = update(ps[i], g, decays[i], states[i], t + 1)
    return ps


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_nesterov_and_coupled_decay_match_the_formula(nesterov):
    """SGD: g += wd * p; buf = g (first step) else mu * buf + g; step along g + mu * buf
    (nesterov) or buf; p -= lr * step. Weight decay only on the matrix; foreach kernels."""
    torch.manual_seed(1)
    model = _Tiny()
    start = [p.detach().clone() for p in model.parameters()]
    lr, mu, wd = 0.07, 0.8, 0.3
    opt = build_optimizer(model, OptimizerConfig(name="sgd", lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["foreach"] is True

    def update(p, g, d, state, t):
        g = g + d * p
        state["buf"] = g if t == 1 else mu * state["buf"] + g
        return p - lr * (g + mu * state["buf"] if nesterov else state["buf"])

    expected = _reference(start, [wd, 0.0, 0.0, 0.0], 3, update)
    for got, want in zip(_run(model, opt), expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _adam_update(lr, b1, b2, eps, decoupled):
    def update(p, g, d, state, t):
        if d and not decoupled:
            g = g + d * p
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = state["m"] / (1 - b1 ** t), state["v"] / (1 - b2 ** t)
        if d and decoupled:
            p = p * (1 - lr * d)
        return p - lr * m_hat / (v_hat.sqrt() + eps)
    return update


@pytest.mark.parametrize("name,decoupled", [("adam", False), ("adamw", True)])
def test_adam_and_adamw_dense_steps_match_the_formula(name, decoupled):
    """Adam adds wd * p to the gradient (L2), AdamW shrinks p by (1 - lr * wd) (decoupled);
    both with the configured lr and betas, bias-corrected moments, eps 1e-8, fused kernels,
    and no decay on the bias or the norm weight."""
    torch.manual_seed(2)
    model = _Tiny()
    start = [p.detach().clone() for p in model.parameters()]
    lr, betas, wd = 0.03, [0.7, 0.9], 0.2
    opt = build_optimizer(model, OptimizerConfig(name=name, lr=lr, betas=betas, weight_decay=wd))
    assert opt.defaults["fused"] is True and tuple(opt.defaults["betas"]) == (0.7, 0.9)
    expected = _reference(start, [wd, 0.0, 0.0, 0.0], 3, _adam_update(lr, 0.7, 0.9, 1e-8, decoupled))
    for got, want in zip(_run(model, opt), expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_lazy_sparse_adam_coupled_decay_over_two_steps_in_a_mixed_group():
    """Lazy Adam with L2 decay, a sparse parameter *after* a dense one in the same group: the
    sparse rows follow the formula with the parameter's step count (rows untouched at a step
    keep their moments and values), and the dense parameter takes the ordinary Adam step."""
    from attnkit.train.optim import Adam

    torch.manual_seed(3)
    dense = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    table = torch.nn.Parameter(torch.randn(5, 2, dtype=torch.float64))
    d0, t0 = dense.detach().clone(), table.detach().clone()
    lr, b1, b2, eps, wd = 0.05, 0.6, 0.8, 1e-8, 0.4
    opt = Adam([{"params": [dense, table], "weight_decay": wd}], lr=lr, betas=(b1, b2), eps=eps, foreach=True)
    used = [[1, 3], [3, 4]]
    g_rows = [torch.randn(2, 2, dtype=torch.float64) for _ in used]
    g_dense = [torch.randn(3, dtype=torch.float64) for _ in used]
    for rows, g, gd in zip(used, g_rows, g_dense):
        table.grad = torch.sparse_coo_tensor(torch.tensor([rows]), g, (5, 2), check_invariants=True)
        dense.grad = gd.clone()
        opt.step()
        assert table.grad is None  # cleared after the lazy step

    update = _adam_update(lr, b1, b2, eps, decoupled=False)
    rows_state = [{} for _ in range(5)]
    want = t0.clone()
    for t, (rows, g) in enumerate(zip(used, g_rows), start=1):
        for r, gr in zip(rows, g):
            # row 4 is first used at the parameter's 2nd step: zero moments, correction with t = 2
            want[r] = update(want[r], gr, wd, rows_state[r], t)
    torch.testing.assert_close(table.detach(), want, rtol=1e-12, atol=1e-12)
    assert torch.equal(table.detach()[[0, 2]], t0[[0, 2]])
    dstate, dwant = {}, d0.clone()
    for t, gd in enumerate(g_dense, start=1):
        dwant = update(dwant, gd, wd, dstate, t)
    torch.testing.assert_close(dense.detach(), dwant, rtol=1e-12, atol=1e-12)


def test_step_passes_the_closure_on():
    """``step(closure)`` re-evaluates the loss through the closure and returns it."""
    from attnkit.train.optim import AdamW

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamW([p], lr=0.1, foreach=True)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        calls.append(loss.item())
        return loss

    loss = opt.step(closure)
    assert calls == [5.0] and loss.item() == 5.0
    assert not torch.equal(p.detach(), torch.tensor([1.0, -2.0]))


# --- gradient clipping ---------------------------------------------------------------------

def test_clip_grad_norm_dense_only():
    """Dense gradients only: the total norm is returned and gradients scale by
    max_norm / (norm + 1e-6) when above max_norm."""
    from attnkit.train.optim import clip_grad_norm

    a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    c = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))  # no gradient: ignored
    a.grad = torch.tensor([3.0, 0.0], dtype=torch.float64)
    b.grad = torch.tensor([4.0], dtype=torch.float64)
    total = clip_grad_norm([a, b, c], 2.0)
    assert float(total) == pytest.approx(5.0, rel=1e-12)
    coef = 2.0 / (5.0 + 1e-6)
    torch.testing.assert_close(a.grad, torch.tensor([3.0 * coef, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b.grad, torch.tensor([4.0 * coef], dtype=torch.float64))
    assert c.grad is None


def test_clip_grad_norm_sparse_tiny_and_small_norms():
    """With sparse gradients: the coefficient is max_norm / (norm + 1e-6) (visible on tiny
    norms) and never above 1 (a norm below max_norm leaves the gradients as they are)."""
    from attnkit.train.optim import clip_grad_norm

    def sparse_param(values):
        p = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
        p.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor(values, dtype=torch.float64),
                                         (3, 2), check_invariants=True)
        return p

    p = sparse_param([[3e-6, 0.0], [0.0, 4e-6]])  # norm 5e-6
    total = clip_grad_norm([p], 1e-6)
    assert float(total) == pytest.approx(5e-6, rel=1e-9)
    coef = 1e-6 / (5e-6 + 1e-6)
    torch.testing.assert_close(p.grad.to_dense()[[0, 2]], torch.tensor([[3e-6 * coef, 0.0], [0.0, 4e-6 * coef]],
                                                                      dtype=torch.float64))
    q = sparse_param([[0.3, 0.0], [0.0, 0.4]])  # norm 0.5, far below max_norm
    assert float(clip_grad_norm([q], 5.0)) == pytest.approx(0.5)
    torch.testing.assert_close(q.grad.to_dense()[[0, 2]], torch.tensor([[0.3, 0.0], [0.0, 0.4]], dtype=torch.float64))


# --- learning-rate schedules ---------------------------------------------------------------

# 40 steps, warm-up 10 steps, min_lr_ratio 0.2: values written out from the formulas
# warm-up (s + 1) / 10; progress p = (s - 10) / 30; linear 0.2 + 0.8 (1 - p);
# cosine 0.2 + 0.8 * (1 + cos(pi p)) / 2 (cos(pi/3) = 0.5, cos(2pi/3) = -0.5).
_TABLE = {  # step: (constant, linear, cosine)
    0: (0.1, 0.1, 0.1), 4: (0.5, 0.5, 0.5), 9: (1.0, 1.0, 1.0), 10: (1.0, 1.0, 1.0),
    20: (1.0, 0.2 + 0.8 * 2 / 3, 0.8), 25: (1.0, 0.6, 0.6), 30: (1.0, 0.2 + 0.8 / 3, 0.4),
    40: (1.0, 0.2, 0.2), 55: (1.0, 0.2, 0.2),  # past the end: held at the final value
}


@pytest.mark.parametrize("warmup", [0.25, 10, 10.0])
@pytest.mark.parametrize("k,name", [(0, "constant"), (1, "linear"), (2, "cosine")])
def test_schedule_table(warmup, k, name):
    """Warm-up given as a fraction (0.25 of 40) or a step count (10) gives the same schedule;
    each shape's values at given steps, including the end and past it, follow its formula."""
    c = ScheduleConfig(name=name, warmup=warmup, min_lr_ratio=0.2)
    for step, values in _TABLE.items():
        assert lr_multiplier(step, 40, c) == pytest.approx(values[k], rel=1e-12), step


def test_schedule_warmup_edges():
    """warmup 1 means one step (not all of them); a fractional warm-up rounds down to whole
    steps; the decay reaches its end one step after warm-up when only one step remains."""
    lin = ScheduleConfig(name="linear", warmup=1)
    assert lr_multiplier(0, 20, lin) == 1.0
    assert lr_multiplier(1, 20, lin) == 1.0
    assert lr_multiplier(11, 20, lin) == pytest.approx(1 - 10 / 19)
    frac = ScheduleConfig(name="linear", warmup=0.3)  # 0.3 * 25 = 7.5 -> 7 steps
    assert lr_multiplier(6, 25, frac) == 1.0
    assert lr_multiplier(16, 25, frac) == pytest.approx(0.5)
    one = ScheduleConfig(name="cosine", min_lr_ratio=0.25)
    assert lr_multiplier(0, 1, one) == 1.0 and lr_multiplier(1, 1, one) == pytest.approx(0.25)
    full = ScheduleConfig(name="linear", warmup=10, min_lr_ratio=0.5)  # warm-up is the whole run
    assert lr_multiplier(9, 10, full) == 1.0 and lr_multiplier(10, 10, full) == 1.0
    assert lr_multiplier(11, 10, full) == pytest.approx(0.5)


def test_build_schedule_scales_every_group():
    """``build_schedule`` sets each group's lr to its own base lr times the multiplier, from
    the first step (warm-up) through the decay."""
    from attnkit.train import build_schedule

    m = _LayerWise()
    opt = build_optimizer(m, OptimizerConfig(name="sgd", lr=0.4))
    bases = [g["lr"] for g in opt.param_groups]
    sched = build_schedule(opt, 40, ScheduleConfig(name="cosine", warmup=0.25, min_lr_ratio=0.2))
    for step in range(41):
        if step in _TABLE:
            for g, base in zip(opt.param_groups, bases):
                assert g["lr"] == pytest.approx(base * _TABLE[step][2], rel=1e-12), step
        opt.step()
        sched.step()


def test_fused_only_where_every_parameter_allows_it():
    from attnkit.train.optim import fastest_kind

    cpu = torch.nn.Parameter(torch.zeros(2))
    meta = torch.nn.Parameter(torch.zeros(2, device="meta"))
    assert fastest_kind([{"params": [cpu]}]) == {"fused": True}
    assert fastest_kind([{"params": [cpu]}, {"params": [meta]}]) == {"foreach": True}
    assert fastest_kind([]) == {"foreach": True}


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_a_fused_step_moves_the_version_counters_and_cached_weights_follow(name):
    """PyTorch's fused Adam writes in place without moving version counters; caches that
    follow weights by version (the fused RNN kernel's packed weights) must still see a step."""
    from attnkit.nn import LSTMEncoder, rnn_kernel

    torch.manual_seed(0)
    enc = LSTMEncoder(6, hidden=5)
    opt = build_optimizer(enc, OptimizerConfig(name=name, lr=0.1))
    assert all(g.get("fused") for g in opt.param_groups)
    x, lengths = torch.randn(2, 4, 6), torch.tensor([4, 3])
    enc.eval()
    with torch.no_grad():
        enc(x, lengths)  # packs the weights
    before = [p._version for p in enc.parameters()]
    enc.train()
    enc(x, lengths).sum().backward()
    opt.step()
    assert all(p._version > v for p, v in zip(enc.parameters(), before))
    enc.eval()
    with torch.no_grad():
        got = enc(x, lengths)
        with rnn_kernel.off():
            want = enc(x, lengths)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
