"""The additive/MLP score's written-out tile backward (``block_backward``), with and without
the activation buffer the score recompute keeps (``block_keep``), against autograd through
the formula written here in float64: ``s_ij = v . act(qf_i + kf_j)``."""
import pytest
import torch

from attnkit.attention import build_score
from attnkit.attention.backends import chunked
from attnkit.attention.scores import MLPScore

ACTS = {"tanh": torch.tanh, "relu": torch.relu}


def formula_grads(qf, kf, v, ds, act):
    qf, kf, v = (x.detach().double().requires_grad_(True) for x in (qf, kf, v))
    s = (ACTS[act](qf.unsqueeze(-2) + kf.unsqueeze(-3)) * v).sum(-1)
    return torch.autograd.grad((s * ds.double()).sum(), (qf, kf, v))


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("shape", [(1, 1, 3, 5), (2, 3, 7, 4), (2, 1, 16, 33)])
@pytest.mark.parametrize("keep", [False, True])
def test_block_backward_matches_formula(act, shape, keep):
    b, h, lq, lk = shape
    g = torch.Generator().manual_seed(lq * 31 + lk)
    score = build_score("mlp", 4, 4, hidden=6, activation=act, bias=False).double()
    qf, kf = torch.randn(b, h, lq, 6, generator=g, dtype=torch.float64), torch.randn(b, h, lk, 6, generator=g, dtype=torch.float64)
    ds = torch.randn(b, h, lq, lk, generator=g, dtype=torch.float64)
    v = score.v.weight.squeeze(0)
    with torch.no_grad():
        s, state = score.block_keep(qf, kf)
        want_s = (ACTS[act](qf.unsqueeze(-2) + kf.unsqueeze(-3)) * v).sum(-1)
        torch.testing.assert_close(s, want_s, rtol=1e-10, atol=1e-10)
        dq, dk, dp = score.block_backward(qf, kf, ds, state if keep else None)
    wq, wk, wv = formula_grads(qf, kf, v, ds, act)
    torch.testing.assert_close(dq, wq, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dk, wk, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dp[score.v.weight].squeeze(0), wv, rtol=1e-9, atol=1e-9)


def test_chunked_bf16_gradients_are_summed_in_float32(monkeypatch):
    """64 query blocks add into the same key rows: summed in float32 and rounded once, the
    bf16 run's dV and score-weight gradient stay within 2.5 bf16 roundings (eps 2^-8) of the
    float64 ones; summed in bf16 they were 0.038 and 0.017 off (measured)."""
    from attnkit.attention import attend

    monkeypatch.setattr(chunked.ChunkedBackend, "budget", 2048)  # 16 x 16 tiles
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 1, 1024, 8, generator=g) for _ in range(3))
    score = build_score("additive", 8, 8, hidden=8)
    grads = {}
    for dtype in (torch.float64, torch.bfloat16):
        s = build_score("additive", 8, 8, hidden=8).to(dtype)
        s.load_state_dict(score.state_dict())
        ins = [x.to(dtype).requires_grad_(True) for x in (q, k, v)]
        out, _, decision = attend(*ins, s)
        assert decision.backend == "chunked"
        out.double().sum().backward()
        grads[dtype] = [ins[2].grad.double(), s.w_k.weight.grad.double()]
    for got, want in zip(grads[torch.bfloat16], grads[torch.float64]):
        err = (got - want).abs().max() / want.abs().max()
        assert err < 2.5 * 2**-8, err


class DoubledMLP(MLPScore):
    """A user's subclass that changes ``block`` only: its own scores must be differentiated,
    not the parent's written-out formula."""

    def block(self, qf, kf):
        return 2 * super().block(qf, kf) + 0.5


@pytest.mark.parametrize("mods", [[], ["relative_bias"]])
def test_subclass_overriding_block_gets_its_own_gradients(monkeypatch, mods):
    from attnkit.attention import attend
    from attnkit.attention.mods import build_mod

    monkeypatch.setattr(chunked.ChunkedBackend, "budget", 256)  # several tiles
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 1, 12, 4, generator=g, dtype=torch.float64) for _ in range(3))
    score = DoubledMLP(4, 4, hidden=5, activation="tanh").double()
    assert score.block_backward is None
    built = [build_mod(m, heads=1).double() for m in mods]
    got, want = {}, {}
    for backend, store in (("chunked", got), ("reference", want)):
        ins = [x.clone().requires_grad_(True) for x in (q, k, v)]
        out, _, decision = attend(*ins, score, mods=built, backend=backend)
        assert decision.backend == backend
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        store["in"] = [x.grad.clone() for x in ins]
        store["w"] = score.w_q.weight.grad.clone()
        score.zero_grad()
    for a, b in zip(got["in"] + [got["w"]], want["in"] + [want["w"]]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
