"""The fused C++ pair loop of the additive/MLP score (``attnkit.attention.pair_kernel``):
scores and gradients against the formula written here in float64 (tanh and relu, hidden
sizes below, at and off the vector width, masked pairs, saturated inputs); through the chunked
backend against the independent oracle with masks and a modifier, checking the kernel really
ran; bf16 inputs computed in float32; and the tensor-op path when the kernel cannot be built."""
import copy
import logging

import pytest
import torch

from attnkit.attention import attend, build_score, pair_kernel
from attnkit.attention.backends import chunked
from attnkit.attention.masks import causal, key_padding
from attnkit.attention.mods import ALiBi

from .oracle import oracle_attention

ACTS = {"tanh": torch.tanh, "relu": torch.relu}
needs_kernel = pytest.mark.skipif(pair_kernel.kernel() is None,
                                  reason=f"the pair kernel could not be built here: {pair_kernel.why_not()}")


def formula(qf, kf, v, act):
    return (ACTS[act](qf.unsqueeze(-2) + kf.unsqueeze(-3)) * v).sum(-1)


@needs_kernel
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("shape", [(1, 1, 3, 5, 5), (2, 3, 7, 9, 16), (2, 1, 33, 17, 37), (1, 2, 20, 64, 128)])
def test_scores_and_gradients_match_the_formula(act, shape):
    b, h, lq, lk, hidden = shape
    g = torch.Generator().manual_seed(lq * 131 + hidden)
    qf, kf = (torch.randn(b, h, n, hidden, generator=g, dtype=torch.float64) * 2 for n in (lq, lk))
    v = torch.randn(hidden, generator=g, dtype=torch.float64)
    ds = torch.randn(b, h, lq, lk, generator=g, dtype=torch.float64)
    ds[..., ::3] = 0  # masked pairs: the backward skips them
    x = [t.clone().requires_grad_() for t in (qf, kf, v)]
    want = formula(*x, act)
    wq, wk, wv = torch.autograd.grad((want * ds).sum(), x)
    got = pair_kernel.pair_scores(qf.float(), kf.float(), v.float(), act)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want.detach(), atol=2e-5 * hidden ** 0.5, rtol=1e-4)
    gq, gk, gv = pair_kernel.pair_backward(qf.float(), kf.float(), v.float(), ds.float(), act)
    scale = (lq + lk) ** 0.5
    for got_g, want_g in ((gq, wq), (gk, wk), (gv, wv)):
        torch.testing.assert_close(got_g.double(), want_g, atol=3e-5 * scale * hidden ** 0.5, rtol=1e-4)


@needs_kernel
def test_saturated_and_tiny_inputs_keep_tanh_exact_enough():
    x = torch.tensor([-100.0, -20.0, -3.0, -1e-4, 0.0, 1e-4, 3.0, 20.0, 100.0]).view(1, 9, 1)
    s = pair_kernel.pair_scores(x.repeat(1, 1, 16), torch.zeros(1, 1, 16), torch.ones(16) / 16, "tanh")
    torch.testing.assert_close(s.view(-1).double(), torch.tanh(x.view(-1).double()), atol=1e-7, rtol=1e-6)
    assert torch.isfinite(s).all()


def _spy(monkeypatch):
    calls = {"scores": 0, "backward": 0}
    real_s, real_b = pair_kernel.pair_scores, pair_kernel.pair_backward

    def scores(*a):
        calls["scores"] += 1
        return real_s(*a)

    def backward(*a):
        calls["backward"] += 1
        return real_b(*a)

    monkeypatch.setattr(pair_kernel, "pair_scores", scores)
    monkeypatch.setattr(pair_kernel, "pair_backward", backward)
    return calls


def _attend_vs_oracle(name, act, mask, allowed, mods, shape, need_weights):
    b, h, lq, lk, d = shape
    torch.manual_seed(lq + lk)
    opts = {"hidden": 24} if name == "additive" else {"hidden": 20, "activation": act}
    score = build_score(name, d, d, **opts)
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for n in (lq, lk, lk))
    out, w, info = attend(q, k, v, score, mask, mods, need_weights=need_weights, backend="chunked")
    up = torch.randn_like(out)
    loss = (out * up).sum() + ((w * w).sum() if need_weights else 0)
    grads = torch.autograd.grad(loss, [q, k, v, *score.parameters()])
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    sd = copy.deepcopy(score).double()
    ref = oracle_attention(qd, kd, vd, sd, allowed, [copy.deepcopy(m).double() for m in mods])
    ref_loss = (ref.out * up.double()).sum() + ((ref.weights ** 2).sum() if need_weights else 0)
    ref_grads = torch.autograd.grad(ref_loss, [qd, kd, vd, *sd.parameters()])
    torch.testing.assert_close(out.double(), ref.out, atol=2e-5, rtol=1e-4)
    if need_weights:
        torch.testing.assert_close(w.double(), ref.weights, atol=2e-6, rtol=1e-4)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), rg, atol=1e-4, rtol=1e-3)


@needs_kernel
@pytest.mark.parametrize("name,act", [("additive", "tanh"), ("mlp", "relu")])
@pytest.mark.parametrize("need_weights", [False, True])
def test_chunked_attention_on_the_kernel_matches_the_oracle(name, act, need_weights, small_tiles, monkeypatch):
    """Several query blocks and key tiles, a padding mask (fully masked tail keys) and a causal
    one, ALiBi on top: outputs, weights and every gradient (the score's parameters too)."""
    calls = _spy(monkeypatch)
    b, h, lq, lk = 2, 2, 37, 45
    lengths = torch.tensor([45, 29])
    padded = (torch.arange(lk) < lengths.view(b, 1, 1, 1))
    _attend_vs_oracle(name, act, [key_padding(lengths)], padded, [ALiBi(h)], (b, h, lq, lk, 8), need_weights)
    tri = torch.ones(lq, lq, dtype=torch.bool).tril()
    _attend_vs_oracle(name, act, [causal()], tri, [], (b, h, lq, lq, 8), need_weights)
    assert calls["scores"] > 4 and calls["backward"] > 4  # many tiles, all of them on the kernel


@needs_kernel
def test_the_tensor_op_path_gives_the_same_answer(monkeypatch):
    calls = _spy(monkeypatch)
    torch.manual_seed(0)
    score = build_score("additive", 16, 16, hidden=32)
    q, k, v = (torch.randn(2, 2, n, 16, requires_grad=True) for n in (50, 60, 60))
    out = attend(q, k, v, score, [causal()], backend="chunked")[0]
    grads = torch.autograd.grad(out.square().sum(), [q, k, v, score.v.weight])
    assert calls["scores"] and calls["backward"]
    before = dict(calls)
    with pair_kernel.off():
        out2 = attend(q, k, v, score, [causal()], backend="chunked")[0]
        grads2 = torch.autograd.grad(out2.square().sum(), [q, k, v, score.v.weight])
    assert calls == before  # off: not called again
    torch.testing.assert_close(out2, out, atol=2e-5, rtol=1e-4)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


@needs_kernel
def test_bf16_inputs_are_computed_in_float32_and_rounded_once():
    torch.manual_seed(1)
    score = build_score("mlp", 8, 8, hidden=40, activation="tanh")
    qf, kf = torch.randn(2, 1, 7, 40).bfloat16(), torch.randn(2, 1, 9, 40).bfloat16()
    with torch.no_grad():
        want = score.block(qf.float(), kf.float()).bfloat16()
        got = score.block(qf, kf)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(score.block(qf, kf), want)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    exact = formula(qf.double(), kf.double(), score.v.weight.double().squeeze(0), "tanh")
    assert (got.double() - exact).abs().max() <= (exact.bfloat16().double() - exact).abs().max() * 1.01 + 1e-6
    ds = torch.randn(2, 1, 7, 9)
    gq, gk, gp = score.block_backward(qf, kf, ds.bfloat16())
    wq, wk, wp = score.block_backward(qf.float(), kf.float(), ds.bfloat16().float())
    assert gq.dtype == gk.dtype == torch.float32  # summed over tiles in float32 by the chunked backend
    assert torch.equal(gq, wq) and torch.equal(gk, wk) and torch.equal(gp[score.v.weight], wp[score.v.weight])


def test_float64_autograd_and_other_activations_keep_the_tensor_ops(monkeypatch):
    calls = _spy(monkeypatch)
    score = build_score("mlp", 8, 8, hidden=16, activation="gelu")
    q = torch.randn(1, 1, 5, 8)
    with torch.no_grad():
        score.block(*score.prepare(q, q))  # gelu: not in the kernel
        build_score("additive", 8, 8, hidden=16).double().block(*[x.double() for x in score.prepare(q, q)])
    additive = build_score("additive", 8, 8, hidden=16)
    additive.block(*additive.prepare(q, q)).sum().backward()  # autograd records: tensor ops
    assert calls == {"scores": 0, "backward": 0}
    assert additive.v.weight.grad is not None


@needs_kernel
def test_tiles_grow_when_the_kernel_holds_no_pair_buffer():
    from attnkit.attention.functional import build_problem

    score = build_score("additive", 16, 16, hidden=128)
    q = torch.randn(2, 1, 2048, 16)
    p = build_problem(q, q, q, score, [], [])
    fused = chunked.tile_sizes(p)
    with pair_kernel.off():
        plain = chunked.tile_sizes(p)
    assert plain == (128, 128) and fused[0] * fused[1] >= 16 * 128 * 128


def test_a_kernel_that_cannot_be_built_is_said_once_and_the_tensor_ops_run(monkeypatch, caplog):
    monkeypatch.setattr(pair_kernel, "_built", {})
    monkeypatch.setenv("ATTNKIT_PAIR_KERNEL", "0")
    score = build_score("additive", 8, 8, hidden=16)
    q, k, v = (torch.randn(1, 1, 20, 8) for _ in range(3))
    with caplog.at_level(logging.WARNING, logger="attnkit"):
        out = attend(q, k, v, score, backend="chunked")[0]
        attend(q, k, v, score, backend="chunked")
    said = [r.getMessage() for r in caplog.records if "pair kernel" in r.getMessage()]
    assert len(said) == 1 and "ATTNKIT_PAIR_KERNEL=0" in said[0] and pair_kernel.why_not() == "ATTNKIT_PAIR_KERNEL=0"
    want = oracle_attention(q.double(), k.double(), v.double(), copy.deepcopy(score).double()).out
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("budget", [2048, 1 << 16, 1 << 22])
def test_tiles_are_the_largest_powers_of_two_within_the_budget(budget):
    from attnkit.attention.functional import build_problem

    with pair_kernel.off():
        for b, h, n, hidden in ((2, 1, 2048, 128), (1, 4, 300, 16), (3, 2, 1000, 7)):
            score = build_score("additive", 16, 16, hidden=hidden)
            q = torch.randn(b, h, n, 16)
            bq, bk = chunked.tile_sizes(build_problem(q, q, q, score, [], []), budget)
            per_pair = b * h * hidden
            assert bq == bk
            if bq < n:  # cut to the budget: a power of two, the largest within it (16 at least)
                assert bq & (bq - 1) == 0
                assert bq == 16 or bq * bk * per_pair <= budget < 4 * bq * bk * per_pair


@needs_kernel
def test_nan_stays_nan_on_every_lane():
    """A diverged input must not come out finite (the vectorised exp clamps its input, which
    would map NaN to tanh = -1): a NaN in a row of 37 features, in a vector lane and the tail."""
    for act in ("tanh", "relu"):
        for h in (3, 36):
            q = torch.randn(1, 2, 37)
            q[0, 0, h] = float("nan")
            s = pair_kernel.pair_scores(q, torch.randn(1, 3, 37), torch.ones(37), act)
            assert torch.isnan(s[0, 0]).all() and torch.isfinite(s[0, 1]).all(), (act, h)


def test_a_failed_build_is_reported_and_the_tensor_ops_run(monkeypatch):
    import torch.utils.cpp_extension as ext

    def broken(*a, **kw):
        raise RuntimeError("Error building extension 'attnkit_pairs'\nc++: fatal error: no input files")

    monkeypatch.setattr(ext, "load_inline", broken)
    monkeypatch.setattr(pair_kernel, "_built", {})
    monkeypatch.delenv("ATTNKIT_PAIR_KERNEL", raising=False)
    score = build_score("mlp", 8, 8, hidden=16, activation="relu")
    q = torch.randn(1, 1, 6, 8)
    out = attend(q, q, q, score, backend="chunked")[0]
    assert pair_kernel.why_not() == "could not build it: RuntimeError: Error building extension 'attnkit_pairs'"
    want = oracle_attention(q.double(), q.double(), q.double(), copy.deepcopy(score).double()).out
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@needs_kernel
def test_a_backward_through_autograd_keeps_tiles_sized_for_the_pair_buffer(monkeypatch):
    """A modifier with parameters (or one that changes dS) differentiates ``block`` by autograd,
    which materialises the pairs: there the tiles stay sized by ``block_cost``, not the kernel's."""
    from attnkit.attention.functional import build_problem
    from attnkit.attention.mods import RelativePositionBias

    score = build_score("additive", 16, 16, hidden=128)
    q = torch.randn(2, 1, 2048, 16, requires_grad=True)
    plain = build_problem(q, q, q, score, [], [])
    learned = build_problem(q, q, q, score, [], [RelativePositionBias(1)])
    assert chunked.tile_sizes(learned) == (128, 128)
    assert chunked.tile_sizes(plain)[0] > 128  # the kernel's own backward: no pair buffer
    alibi = build_problem(q, q, q, score, [], [ALiBi(1)])  # a fixed bias leaves dS alone: the kernel's backward
    assert chunked.tile_sizes(alibi)[0] > 128
    with torch.no_grad():
        assert chunked.tile_sizes(learned)[0] > 128  # no backward at all
    small = torch.randn(1, 2, 40, 16, requires_grad=True)
    _spy(monkeypatch)
    r = RelativePositionBias(2)
    out = attend(small, small, small, score, mods=[r], backend="chunked")[0]
    grads = torch.autograd.grad(out.square().sum(), [small, r.table])
    with pair_kernel.off():
        ref = attend(small, small, small, score, mods=[r], backend="reference")[0]
        want = torch.autograd.grad(ref.square().sum(), [small, r.table])
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-3)


@needs_kernel
def test_where_the_kernel_runs_and_where_it_must_not(monkeypatch):
    """Three-dim inputs and a single pair run on it; empty blocks, a tracer and a compiler do
    not (a traced or compiled graph cannot see into the kernel)."""
    calls = _spy(monkeypatch)
    score = build_score("additive", 4, 4, hidden=1)
    with torch.no_grad():
        score.block(torch.randn(3, 5, 1), torch.randn(3, 6, 1))  # (rows, L, hidden)
        score.block(torch.randn(1, 1, 1, 1), torch.randn(1, 1, 1, 1))  # one query, one key, hidden 1
        assert calls["scores"] == 2
        empty = score.block(torch.randn(1, 1, 0, 1), torch.randn(1, 1, 4, 1))
        assert empty.shape == (1, 1, 0, 4)
        score.block(torch.randn(1, 1, 4, 1), torch.randn(1, 1, 0, 1))
        assert calls["scores"] == 2
        q, k = torch.randn(1, 1, 3, 1), torch.randn(1, 1, 4, 1)
        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.score = score

            def forward(self, a, b):
                return self.score.block(a, b)

        torch.jit.trace(Block(), (q, k), check_trace=False)
        assert calls["scores"] == 2
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        score.block(q, k)
        assert calls["scores"] == 2


@needs_kernel
def test_gradients_do_not_depend_on_the_thread_count():
    """A resumed run ends bit for bit where an uninterrupted one does, though the thread count
    changes with the machine's load (threads_for_tiles): the backward's sums must not follow it."""
    g = torch.Generator().manual_seed(3)
    for r, m in ((1, 37), (2, 64), (9, 5)):
        qf, kf = torch.randn(r, m, 20, generator=g), torch.randn(r, 33, 20, generator=g)
        v, ds = torch.randn(20, generator=g), torch.randn(r, m, 33, generator=g)
        threads = torch.get_num_threads()
        try:
            outs = []
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                outs.append(pair_kernel.pair_backward(qf, kf, v, ds, "tanh"))
        finally:
            torch.set_num_threads(threads)
        for other in outs[1:]:
            assert all(torch.equal(a, b) for a, b in zip(outs[0], other))
