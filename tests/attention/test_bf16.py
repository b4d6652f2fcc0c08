"""bf16 inputs on every backend, forward and backward, against the float64 oracle, with the
tolerance set by a plain bf16 computation's own error: the ``reference`` backend, which
materialises scores and weights in the inputs' dtype as a textbook implementation would (it
is itself held to a fixed bound). A fast backend may be somewhat worse than that plain
computation (it rounds in other places), never much worse, and never crash."""
import copy

import pytest
import torch

from attnkit.attention import BACKENDS, list_backends
from attnkit.attention.functional import attend, build_problem

from .cases import make_mask, make_mods, make_score, oracle_allowed
from .oracle import oracle_attention

# a pairwise-style sample of score x mask x modifier (the fp32 grid covers every triple)
CASES = [("scaled_dot", "causal&window|prefix", "alibi"), ("scaled_dot", "key_padding", "none"),
         ("scaled_dot", "none", "alibi+temperature+softcap"), ("general", "sparse_rows", "user_bias"),
         ("additive", "causal&window|prefix", "none"), ("additive", "key_padding", "alibi"),
         ("mlp", "user", "none"), ("mlp_relu", "none", "user_bias"), ("cosine", "key_padding", "none"),
         ("dot", "causal&window|prefix", "relative_bias_causal")]
SHAPES = [(2, 2, 37, 45, 8), (1, 2, 50, 19, 16)]
SLACK = 4.0  # a backend's error may be this many times the plain bf16 computation's
FLOOR = 2e-2  # ... or this much, for cases where the plain computation happens to be almost exact
PLAIN_BOUND = 0.12  # the plain computation's own error, relative to the largest value (measured up to 0.096: an MLP score)


def _run(q, k, v, score, mods, allowed, upstream, fn):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, score, mods, allowed)
    grads = torch.autograd.grad((out.double() * upstream).sum(), [q, k, v])
    return out.double(), [g.double() for g in grads]


def _oracle(q, k, v, score, mods, allowed):
    s = copy.deepcopy(score).double()
    ms = [copy.deepcopy(m).double() for m in mods]
    return oracle_attention(q.double(), k.double(), v.double(), s, allowed, ms).out


def _err(got, want) -> float:
    got, want = got.detach(), want.detach()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("score_name,mask_kind,mod_kind", CASES, ids=lambda c: c)
def test_bf16_on_every_backend_within_bf16s_own_error(score_name, mask_kind, mod_kind, shape, small_tiles):
    b, h, lq, lk, d = shape
    torch.manual_seed(0)
    score = make_score(score_name, d, "cpu").to(torch.bfloat16)
    mods = [m.to(torch.bfloat16) for m in make_mods(mod_kind, h, "cpu")]
    q, k, v = (torch.randn(b, h, n, d).bfloat16() for n in (lq, lk, lk))
    allowed = oracle_allowed(mask_kind, b, lq, lk)
    upstream = torch.randn(b, h, lq, d, dtype=torch.float64)
    want, want_g = _run(q, k, v, score, mods, allowed, upstream, _oracle)
    mask = make_mask(mask_kind, b, lq, lk, "cpu")
    p = build_problem(q, k, v, score, mask, mods)

    def backend(q, k, v, score, mods, allowed, name):
        out, _, _ = attend(q, k, v, score, mask, mods, backend=name)
        assert out.dtype == torch.bfloat16, f"{name}: output {out.dtype} for bf16 inputs"
        return out

    # the yardstick is the textbook computation, every step in bf16: an MLP score's pair loop too
    # (attnkit runs that loop in float32, which only makes the backends under test more exact)
    pair_dtype = getattr(score, "pair_dtype", None)
    if pair_dtype is not None:
        score.pair_dtype = None
    plain, plain_g = _run(q, k, v, score, mods, allowed, upstream, lambda *a: backend(*a, name="reference"))
    if pair_dtype is not None:
        score.pair_dtype = pair_dtype
    for what, g, w in [("output", plain, want)] + [(f"grad {x}", gg, wg) for x, gg, wg in zip("qkv", plain_g, want_g)]:
        assert _err(g, w) <= PLAIN_BOUND, f"reference {what}: error {_err(g, w):.4f}"
    ran = ["reference"]
    for name in list_backends():
        if name in ("flex", "reference") or BACKENDS.get(name).why_not(p) is not None:
            continue
        got, got_g = _run(q, k, v, score, mods, allowed, upstream, lambda *a, n=name: backend(*a, name=n))
        assert torch.isfinite(got).all(), name
        for what, g, w, pl in [("output", got, want, plain)] + [
                (f"grad {x}", gg, wg, pg) for x, gg, wg, pg in zip("qkv", got_g, want_g, plain_g)]:
            limit = max(SLACK * _err(pl, w), FLOOR)
            assert _err(g, w) <= limit, f"{name} {what}: error {_err(g, w):.4f} > {limit:.4f} (plain bf16 " \
                                        f"{_err(pl, w):.4f})"
        ran.append(name)
    assert "chunked" in ran, ran  # the chunked backend accepts every spec
    if score_name in ("scaled_dot", "dot", "general", "cosine") and mod_kind in ("none", "alibi", "user_bias"):
        assert "blocksparse" in ran, ran  # dot products with fixed biases: the block-sparse kernel too


def test_blocksparse_bf16_backward_at_length_with_many_tiles():
    """The crash users met: bf16 forward + backward through the block-sparse tile path with a
    window and ALiBi (the log-sum-exp was kept in bf16 and the kernel's backward refused it)."""
    from attnkit.attention import ALiBi, build_score, window

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 1024, 32).bfloat16().requires_grad_() for _ in range(3))
    out, _, d = attend(q, k, v, build_score("scaled_dot", 32, 32), mask=[window(64)], mods=[ALiBi(2)],
                       backend="blocksparse")
    out.float().sum().backward()
    assert d.backend == "blocksparse" and q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_the_mlp_pair_loop_in_float32_for_bf16_inputs(activation):
    """With ``pair_dtype = float32`` the additive/MLP score's tensor-op pair loop computes in
    float32 and rounds only its result: exactly the float32 computation rounded to bf16
    (forward, under autocast too, and the written-out backward), which the loop in bf16 is not.
    (The fused kernel always computes in float32: test_pair_kernel.py.)"""
    from attnkit.attention import build_score, pair_kernel

    with pair_kernel.off():
        _pair_loop_in_float32(build_score, activation)


def _pair_loop_in_float32(build_score, activation):
    torch.manual_seed(0)
    score = build_score("mlp", 8, 8, hidden=16, activation=activation)
    assert score.pair_dtype is None  # the default: the inputs' dtype (measured faster; see MLPScore)
    score.pair_dtype = torch.float32
    qf, kf = torch.randn(2, 1, 7, 16).bfloat16(), torch.randn(2, 1, 9, 16).bfloat16()
    want = score.block(qf.float(), kf.float()).bfloat16()
    got = score.block(qf, kf)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    score.pair_dtype = None  # the loop in the inputs' dtype: a different (coarser) result
    assert not torch.equal(score.block(qf, kf), want)
    score.pair_dtype = torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast must not send the loop back to bf16
        assert torch.equal(score.block(qf, kf), want)
    if score.block_backward is not None:
        ds = torch.randn(2, 1, 7, 9)
        gq, gk, gp = score.block_backward(qf, kf, ds.bfloat16())
        wq, wk, wp = score.block_backward(qf.float(), kf.float(), ds.bfloat16().float())
        assert gq.dtype == gk.dtype == torch.bfloat16
        assert torch.equal(gq, wq.bfloat16()) and torch.equal(gk, wk.bfloat16())
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast kept out of the float32 loop here too
            aq, ak, _ = score.block_backward(qf, kf, ds.bfloat16())
        assert torch.equal(aq, gq) and torch.equal(ak, gk)
        torch.testing.assert_close(gp[score.v.weight], wp[score.v.weight])
