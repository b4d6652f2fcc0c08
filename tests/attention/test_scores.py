"""Each built-in score against its formula, written here independently in float64."""
import math

import pytest
import torch

from attnkit.attention import build_score, list_scores
from attnkit.errors import ConfigError, UnknownNameError


def _qk(lq=5, lk=7, dq=6, dk=6):
    return torch.randn(2, 3, lq, dq, dtype=torch.float64), torch.randn(2, 3, lk, dk, dtype=torch.float64)


def test_list_scores_names_the_builtins():
    assert set(list_scores()) >= {"dot", "scaled_dot", "general", "additive", "mlp", "cosine"}
    assert list_scores("*dot*") == ["dot", "scaled_dot"]


def test_dot_and_scaled_dot():
    q, k = _qk()
    ref = torch.einsum("bhid,bhjd->bhij", q, k)
    torch.testing.assert_close(build_score("dot", 6, 6).double()(q, k), ref)
    torch.testing.assert_close(build_score("scaled_dot", 6, 6).double()(q, k), ref / math.sqrt(6))


def test_general_is_bilinear_with_different_dims():
    q, k = _qk(dq=4, dk=9)
    s = build_score("general", 4, 9).double()
    w = s.weight.weight  # (k_dim, q_dim)
    ref = torch.einsum("bhid,ed,bhje->bhij", q, w, k)
    torch.testing.assert_close(s(q, k), ref)


@pytest.mark.parametrize("name,act", [("additive", torch.tanh), ("mlp", torch.relu)])
def test_additive_and_mlp_formula(name, act):
    q, k = _qk(dq=4, dk=5)
    opts = {"hidden": 8} if name == "additive" else {"hidden": 8, "activation": "relu"}
    s = build_score(name, 4, 5, **opts).double()
    ref = torch.empty(2, 3, 5, 7, dtype=torch.float64)
    for i in range(5):
        for j in range(7):
            pre = s.w_q(q[:, :, i]) + s.w_k(k[:, :, j])  # (2, 3, hidden)
            ref[:, :, i, j] = act(pre) @ s.v.weight[0]
    torch.testing.assert_close(s(q, k), ref)


def test_cosine_with_learnable_temperature():
    q, k = _qk()
    s = build_score("cosine", 6, 6, scale=5.0).double()
    ref = 5.0 * torch.einsum("bhid,bhjd->bhij", q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(s(q, k), ref)
    s(q, k).sum().backward()
    assert s.log_scale.grad is not None


def test_user_callable_score():
    q, k = _qk()
    s = build_score(lambda a, b: -(a.unsqueeze(-2) - b.unsqueeze(-3)).abs().sum(-1), 6, 6)
    assert s(q, k).shape == (2, 3, 5, 7)


def test_block_of_tiles_equals_full_scores():
    """The chunked backend relies on block() of tiles agreeing with the full matrix."""
    q, k = _qk(lq=9, lk=11)
    for name in list_scores():
        s = build_score(name, 6, 6).double()
        full = s(q, k)
        qf, kf = s.prepare(q, k)
        torch.testing.assert_close(s.block(qf[:, :, 2:7], kf[:, :, 3:10]), full[:, :, 2:7, 3:10])


def test_bad_score_arguments():
    with pytest.raises(UnknownNameError, match="known: additive, cosine, dot"):
        build_score("bahdanau", 4, 4)
    with pytest.raises(ConfigError, match="same dim"):
        build_score("dot", 4, 5)
    with pytest.raises(ConfigError, match="hidden: must be > 0"):
        build_score("mlp", 4, 4, hidden=-3)
    with pytest.raises(ConfigError, match="activation"):
        build_score("mlp", 4, 4, activation="swishy")


def test_cosine_needs_equal_dims_and_says_so():
    with pytest.raises(ConfigError, match=r"score 'cosine' needs queries and keys of the same dim, got q_dim=4, k_dim=5"):
        build_score("cosine", 4, 5)


def test_a_user_score_is_named_after_its_function():
    def neg_l1(a, b):
        return -(a.unsqueeze(-2) - b.unsqueeze(-3)).abs().sum(-1)

    class Scorer:  # a callable object: no __name__
        def __call__(self, a, b):
            return a @ b.transpose(-1, -2)

    assert build_score(neg_l1, 4, 4).name == "neg_l1"
    assert build_score(Scorer(), 4, 4).name == "callable"
