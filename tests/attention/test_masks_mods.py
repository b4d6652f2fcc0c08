"""Masks (combinators, key-range hints, data masks) and score modifiers against formulas."""
import math

import pytest
import torch

from attnkit.attention import (
    ALiBi,
    RelativePositionBias,
    SoftCap,
    Temperature,
    causal,
    key_padding,
    prefix_lm,
    window,
)
from attnkit.attention.masks import build_mask, evaluate_mask, list_masks
from attnkit.attention.mods import build_mod, list_mods
from attnkit.errors import ConfigError, ShapeError, UnknownNameError

from .cases import MASK_KINDS, make_mask


def _dense(mask, b=2, h=2, lq=13, lk=11):
    return evaluate_mask(mask, b, h, (0, lq), (0, lk), "cpu").expand(b, h, lq, lk)


def test_every_registered_mask_has_a_test_case():
    assert set(list_masks()) <= set(MASK_KINDS)


def test_builtin_masks_match_their_definition():
    i = torch.arange(13).view(-1, 1)
    j = torch.arange(11).view(1, -1)
    assert torch.equal(_dense(causal())[0, 0], i >= j)
    assert torch.equal(_dense(window(3))[0, 0], (i - j).abs() <= 3)
    assert torch.equal(_dense(prefix_lm(4))[0, 0], (i >= j) | (j < 4))
    lengths = torch.tensor([5, 11])
    m = _dense(key_padding(lengths=lengths))
    assert torch.equal(m[0, 0], (j < 5).expand(13, 11)) and m[1].all()


def test_combinators():
    a, b = causal(), window(2)
    torch.testing.assert_close(_dense(a & b), _dense(a) & _dense(b))
    torch.testing.assert_close(_dense(a | b), _dense(a) | _dense(b))
    torch.testing.assert_close(_dense(~a), ~_dense(a))
    torch.testing.assert_close(_dense(a & (lambda b_, h, q, kv: kv % 2 == 0)), _dense(a) & (torch.arange(11) % 2 == 0))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_kv_bounds_cover_every_visible_key(kind):
    """The key-range hint may be loose, never tight: backends skip keys outside it."""
    b, lq, lk = 2, 23, 19
    mask = make_mask(kind, b, lq, lk, "cpu")
    if mask is None:
        return
    from attnkit.attention.masks import as_mask

    mask = as_mask(mask)
    dense = _dense(mask, b, 1, lq, lk)
    for q0 in range(0, lq, 5):
        q1 = min(lq, q0 + 5)
        lo, hi = mask.kv_bounds(q0, q1, lk)
        visible = dense[:, :, q0:q1].any(0).any(0).any(0).nonzero().flatten()
        if visible.numel():
            assert lo <= int(visible.min()) and int(visible.max()) < hi, (kind, q0, lo, hi)


def test_mask_spec_entries_and_errors():
    assert build_mask({"window": 4}).name == "window(4)"
    with pytest.raises(UnknownNameError, match="known: causal"):
        build_mask("casual")
    with pytest.raises(ConfigError, match="window: size must be an int >= 0"):
        build_mask({"window": -1})
    with pytest.raises(ShapeError, match=r"key_padding mask: expected a bool tensor \[B, Lk\]"):
        key_padding(mask=torch.ones(2, 3))
    with pytest.raises(ShapeError, match="must return a bool tensor"):
        evaluate_mask(build_mask(lambda b, h, q, kv: q - kv), 1, 1, (0, 2), (0, 2), "cpu")


def _grid(h=4, lq=6, lk=9):
    return (torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.arange(h).view(1, -1, 1, 1),
            torch.arange(lq).view(1, 1, -1, 1), torch.arange(lk).view(1, 1, 1, -1))


def test_alibi_formula():
    s = torch.randn(1, 4, 6, 9, dtype=torch.float64)
    out = ALiBi(4).double()(s, *_grid())
    for h in range(4):
        m = 2 ** (-8 * (h + 1) / 4)
        for i in range(6):
            for j in range(9):
                assert math.isclose(out[0, h, i, j].item(), s[0, h, i, j].item() - m * abs(i - j), rel_tol=1e-12)


def _t5_bucket(rel, num_buckets, max_distance):
    """T5's relative_position_bucket (bidirectional), transcribed from the paper's code."""
    n = num_buckets // 2
    ret = n if rel > 0 else 0
    rel = abs(rel)
    max_exact = n // 2
    if rel < max_exact:
        return ret + rel
    val = max_exact + int(math.log(rel / max_exact) / math.log(max_distance / max_exact) * (n - max_exact))
    return ret + min(val, n - 1)


def test_relative_bias_buckets_match_t5():
    mod = RelativePositionBias(2, num_buckets=32, max_distance=128)
    rel = torch.arange(-300, 301)
    got = mod.bucket(rel)
    want = torch.tensor([_t5_bucket(int(r), 32, 128) for r in rel])
    assert torch.equal(got, want)
    s = torch.zeros(1, 2, 6, 9)
    out = mod(s, *_grid(h=2))
    assert out[0, 1, 2, 5] == mod.table[_t5_bucket(3, 32, 128), 1]


def test_softcap_and_temperature():
    s = torch.randn(1, 4, 6, 9, dtype=torch.float64) * 10
    torch.testing.assert_close(SoftCap(3.0)(s, *_grid()), 3.0 * torch.tanh(s / 3.0))
    torch.testing.assert_close(Temperature(2.0).double()(s, *_grid()), s / 2.0)


def test_every_registered_mod_builds_from_its_name():
    for name in list_mods():
        assert build_mod(name, heads=4) is not None
    with pytest.raises(UnknownNameError, match="known: alibi"):
        build_mod("alibbi", 4)
    with pytest.raises(ConfigError, match="softcap: cap must be > 0"):
        build_mod({"softcap": -1}, 4)


def test_mask_names_and_key_range_hints_are_exact():
    """Names appear in dispatch reasons and reprs; the key-range hint is what lets backends
    skip key blocks, so each factory's hint is pinned to the tightest range its rule allows."""
    lk = 40
    cases = [
        (causal(), "causal", {(0, 8): (0, 8), (16, 24): (0, 24), (36, 44): (0, 40)}),
        (window(3), "window(3)", {(0, 8): (0, 11), (16, 24): (13, 27), (36, 44): (33, 40)}),
        (prefix_lm(5), "prefix_lm", {(0, 2): (0, 5), (16, 24): (0, 24), (36, 44): (0, 40)}),
        (prefix_lm(torch.tensor([2, 9])), "prefix_lm", {(0, 2): (0, 9), (16, 24): (0, 24)}),
        (key_padding(lengths=torch.tensor([7, 12])), "key_padding", {(0, 8): (0, 12), (30, 40): (0, 12)}),
        (key_padding(mask=torch.tensor([[True, False, False], [False, True, False]])), "key_padding",
         {(0, 8): (0, 2)}),
    ]
    for mask, name, hints in cases:
        assert mask.name == name
        for (q0, q1), want in hints.items():
            assert mask.kv_bounds(q0, q1, lk) == want, (name, q0, q1)
    from attnkit.attention import segment
    assert segment(torch.zeros(1, 3, dtype=torch.long)).name == "segment"
    assert segment(torch.zeros(1, 3, dtype=torch.long)).kv_bounds(0, 3, 3) == (0, 3)


def test_empty_batches_give_empty_key_ranges():
    assert key_padding(lengths=torch.zeros(0, dtype=torch.long)).kv_bounds(0, 4, 10) == (0, 0)
    assert key_padding(mask=torch.zeros(0, 10, dtype=torch.bool)).kv_bounds(0, 4, 10) == (0, 0)
    assert key_padding(mask=torch.zeros(2, 10, dtype=torch.bool)).kv_bounds(0, 4, 10) == (0, 0)
    assert prefix_lm(torch.zeros(0, dtype=torch.long)).kv_bounds(0, 4, 10) == (0, 4)


def test_only_the_plain_causal_mask_claims_the_fused_causal_flag():
    assert causal().is_causal is True
    assert (causal() & window(3)).is_causal is False and window(3).is_causal is False
    assert prefix_lm(0).is_causal is False


def test_mask_factory_edges_and_validation():
    i, j = torch.arange(7).view(-1, 1), torch.arange(9).view(1, -1)
    assert torch.equal(_dense(window(0), lq=7, lk=9)[0, 0], i == j)  # size 0: the diagonal alone
    assert torch.equal(_dense(prefix_lm(0), lq=7, lk=9)[0, 0], i >= j)  # prefix 0: plain causal
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ConfigError, match="mask window: size must be an int >= 0"):
            window(bad)
    with pytest.raises(ConfigError, match="mask prefix_lm: prefix must be >= 0"):
        prefix_lm(-1)
    with pytest.raises(ShapeError, match="key_padding mask: expected a bool tensor"):
        key_padding(mask=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="key_padding mask: expected a bool tensor"):
        key_padding(mask=torch.ones(2, 3, 1, dtype=torch.bool))
    from attnkit.attention import segment
    for q_ids, kv_ids in ((torch.zeros(3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long)),
                          (torch.zeros(1, 3, dtype=torch.long), torch.zeros(3, dtype=torch.long))):
        with pytest.raises(ShapeError, match="segment ids: expected"):
            segment(q_ids, kv_ids)
    assert list_masks() == ["causal", "key_padding", "prefix_lm", "segment", "window"]


def test_combined_mask_names_say_how_they_were_built():
    assert (causal() & window(3)).name == "(causal & window(3))"
    assert (causal() | prefix_lm(2)).name == "(causal | prefix_lm)"
    assert (~causal()).name == "~causal"


def test_temperature_is_fixed_unless_asked_and_keeps_the_scores_dtype():
    fixed, learned = Temperature(2.0), Temperature(2.0, learnable=True)
    assert list(fixed.parameters()) == [] and [n for n, _ in learned.named_parameters()] == ["log_t"]
    s = torch.randn(1, 2, 3, 4).bfloat16()
    out = learned(s, *_grid(2, 3, 4))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert learned.log_t.grad is not None and learned.log_t.grad.abs() > 0


def test_a_user_bias_mod_is_computed_in_the_dtype_asked_for():
    """``ScoreMod.bias`` runs a user function on a zero score of the dtype asked for: a term
    computed from that score (here a constant) is exact in float64, not a float32 value widened."""
    from attnkit.attention.mods import CallableMod

    mod = CallableMod(lambda s, b, h, q, kv: s + 0.1, kind="bias")
    q_idx, kv_idx = torch.arange(5).view(1, 1, 5, 1), torch.arange(7).view(1, 1, 1, 7)
    got = mod.bias(None, None, q_idx, kv_idx, torch.float64)
    assert got.dtype == torch.float64 and got.item() == 0.1


def test_a_user_mod_is_named_after_its_function():
    from attnkit.attention.mods import CallableMod

    def shift(s, b, h, q, kv):
        return s + 1

    class Shift:
        def __call__(self, s, b, h, q, kv):
            return s + 1

    assert CallableMod(shift).name == "shift" and CallableMod(Shift()).name == "score_mod"
