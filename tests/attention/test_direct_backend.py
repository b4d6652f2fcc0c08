"""The ``direct`` backend: small calls without gradients in one pass. When the dispatcher
picks it (and when not), and its output and weights against the float64 reference on the
cases its one-pass softmax must get right: padding, rows with nothing visible, modifiers.
(Gradients, forced, are held to the oracle with every other backend in test_backends.py.)"""
import pytest
import torch

from attnkit.attention import AttentionPooling, attend, causal, explain_dispatch, key_padding
from attnkit.attention.backends import BACKENDS
from attnkit.attention.backends.direct import score_work
from attnkit.attention.functional import build_problem
from attnkit.attention.mods import build_mod
from attnkit.attention.scores import build_score


def test_small_inference_calls_go_direct_and_training_calls_stay_chunked():
    pool = AttentionPooling(16, score="additive", hidden=8)
    x, lengths = torch.randn(2, 7, 16), torch.tensor([7, 3])
    d = explain_dispatch(pool, x, lengths=lengths)
    assert d.backend == "chunked"
    assert ("direct", "gradients needed: the chunked backend recomputes its tiles in the backward instead of "
                      "keeping them") in d.passed_over
    with torch.no_grad():
        d = explain_dispatch(pool, x, lengths=lengths)
        assert d.backend == "direct" and d.reason == "fastest able for cpu, grad=no"
        assert [name for name, _ in d.passed_over] == ["sdpa", "blocksparse", "flex"]  # flex: never automatic on CPU
        pool(x, lengths=lengths)
        assert pool.last_dispatch.backend == "direct"


def test_score_work_counts_every_pair_at_the_cost_the_call_pays():
    """B*H*Lq*Lk pairs; per pair the score's cost without gradients (1 for a dot product, the
    fused kernel's for additive), with them what autograd keeps (additive: its hidden size)."""
    q, k = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 10, 8)
    assert score_work(build_problem(q, k, k, build_score("scaled_dot", 8, 8))) == 2 * 3 * 6 * 10
    additive = build_score("additive", 8, 8, hidden=40)
    with torch.no_grad():
        p = build_problem(q, k, k, additive)
        assert score_work(p) == 2 * 3 * 6 * 10 * additive.tile_cost(p.qf, p.kf) < 2 * 3 * 6 * 10 * 40
    assert score_work(build_problem(q, k, k, additive)) == 2 * 3 * 6 * 10 * 40  # the weights require grad


def test_a_call_larger_than_one_tile_is_tiled(monkeypatch):
    score = build_score("additive", 8, 8, hidden=4)
    q, k = torch.randn(1, 1, 6, 8), torch.randn(1, 1, 10, 8)
    with torch.no_grad():
        p = build_problem(q, k, k, score, None, [])
    work = score_work(p)
    assert work == 6 * 10 * max(1, score.tile_cost(p.qf, p.kf))
    direct = BACKENDS.get("direct")
    monkeypatch.setattr(type(direct), "budget", work)
    with torch.no_grad():
        assert direct.why_not(p) is None
    monkeypatch.setattr(type(direct), "budget", work - 1)
    with torch.no_grad():
        assert direct.why_not(p) == f"{work:,} floats of scores exceed one tile ({work - 1:,}): tiled instead"
    with torch.no_grad():
        assert attend(q, k, k, score)[2].backend == "chunked"


@pytest.mark.parametrize("score_name,mods", [("additive", []), ("scaled_dot", ["alibi"]), ("mlp", [])])
def test_direct_equals_the_float64_reference_with_padding_and_empty_rows(score_name, mods):
    """Padding by lengths (one sequence empty: its row sees nothing and must give zeros, not
    NaN), causal masking, weights returned."""
    torch.manual_seed(4)
    b, h, lq, lk, d = 3, 2, 5, 6, 8
    score = build_score(score_name, d, d)
    q, k, v = torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, 4)
    mod_list = [build_mod(m, heads=h) for m in mods]
    mask = causal() & key_padding(lengths=torch.tensor([6, 2, 0]))
    with torch.no_grad():
        # a masked dot product goes to blocksparse by itself: forced here
        out, w, how = attend(q, k, v, score, mask, mod_list, need_weights=True,
                             backend="auto" if score_name != "scaled_dot" else "direct")
        assert how.backend == "direct"
        ref, ref_w, _ = attend(q.double(), k.double(), v.double(), score.double(), mask, mod_list,
                               need_weights=True, backend="reference")
    score.float()
    torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(w.double(), ref_w, atol=2e-6, rtol=1e-5)
    assert (out[2] == 0).all() and (w[2] == 0).all() and torch.isfinite(out).all()


def test_bf16_without_gradients_is_within_bf16s_own_error():
    """bf16 inputs (the pair kernel widens them): output and weights come back in bf16, near
    the float64 reference."""
    torch.manual_seed(9)
    score = build_score("additive", 16, 16, hidden=8)
    q, k, v = torch.randn(2, 1, 3, 16), torch.randn(2, 1, 9, 16), torch.randn(2, 1, 9, 4)
    mask = key_padding(lengths=torch.tensor([9, 4]))
    with torch.no_grad():
        ref, ref_w, _ = attend(q.double(), k.double(), v.double(), score.double(), mask, need_weights=True,
                               backend="reference")
        score.bfloat16()
        out, w, how = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), score, mask, need_weights=True)
    assert how.backend == "direct" and out.dtype == w.dtype == torch.bfloat16
    assert (out.double() - ref).abs().max() < 0.05 and (w.double() - ref_w).abs().max() < 0.02
    assert (w[1, :, :, 4:] == 0).all()


def test_non_finite_scores_give_what_the_chunked_backend_gives():
    """A NaN or +inf among the visible scores makes its row NaN in both backends; a -inf score
    is weight 0 and the other rows are equal."""
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 1, 4, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 3)
    score = build_score("dot", 8, 8)

    def poked(s, b, h, qi, kv):  # row 0: NaN at key 1; row 1: +inf at key 2; row 2: -inf at key 0
        s = torch.where((qi == 0) & (kv == 1), torch.full_like(s, float("nan")), s)
        s = torch.where((qi == 1) & (kv == 2), torch.full_like(s, float("inf")), s)
        return torch.where((qi == 2) & (kv == 0), torch.full_like(s, float("-inf")), s)

    mods = [build_mod(poked, heads=1)]
    rows = {}
    with torch.no_grad():
        for name in ("direct", "chunked"):
            out, w, _ = attend(q, k, v, score, None, mods, need_weights=True, backend=name)
            rows[name] = (out, w)
    for out, w in rows.values():
        assert torch.isnan(out[0, 0, 0]).all() and torch.isnan(out[0, 0, 1]).all()
        assert w[0, 0, 2, 0] == 0 and torch.isfinite(out[0, 0, 2:]).all()
    torch.testing.assert_close(rows["direct"][0][..., 2:, :], rows["chunked"][0][..., 2:, :])
    torch.testing.assert_close(rows["direct"][1][..., 2:, :], rows["chunked"][1][..., 2:, :])


def test_a_row_empty_in_one_head_only_is_zeros_and_weights_come_only_when_asked():
    """Head 0 sees every key; in head 1 query 0 sees nothing (its row must be zeros) and query
    i sees the keys before it: dead rows are found per row, not per head or per column."""
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 3)
    score = build_score("additive", 8, 8, hidden=4)
    mask = lambda b, h, qi, kv: (h == 0) | (kv < qi)  # noqa: E731
    with torch.no_grad():
        out, w, how = attend(q, k, v, score, mask, need_weights=True)
        ref, ref_w, _ = attend(q.double(), k.double(), v.double(), score.double(), mask, need_weights=True,
                               backend="reference")
        score.float()
        assert how.backend == "direct" and attend(q, k, v, score, mask)[1] is None
    assert (out[:, 1, 0] == 0).all() and (w[:, 1, 0] == 0).all()
    torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(w.double(), ref_w, atol=2e-6, rtol=1e-5)


def test_switched_off_on_a_thread_it_is_not_picked_there():
    from attnkit.attention.backends import direct

    pool = AttentionPooling(16, score="additive", hidden=8)
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        with direct.off():
            d = explain_dispatch(pool, x)
        assert d.backend == "chunked" and ("direct", "switched off on this thread (direct.off())") in d.passed_over
        assert explain_dispatch(pool, x).backend == "direct"
