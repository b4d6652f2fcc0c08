"""Edges the main grid does not reach: float64 inputs through every backend (held to the
oracle at float64 precision, so a silent float32 temporary shows), inference with fully
masked rows beside live ones in one batch, T5 buckets over the whole option space, and the
modifiers' and scores' defaults and validation."""
import copy
import itertools

import pytest
import torch

from attnkit.attention import BACKENDS, RelativePositionBias, list_backends
from attnkit.attention.functional import attend, build_problem
from attnkit.attention.mods import CallableMod, list_mods
from attnkit.attention.scores import CallableScore
from attnkit.errors import ConfigError

from .cases import make_mask, make_mods, make_score, oracle_allowed
from .oracle import oracle_attention, t5_bucket

PRECISION_CASES = [("scaled_dot", "key_padding", "relative_bias_causal"), ("dot", "sparse_rows", "alibi"),
                   ("additive", "causal", "relative_bias"), ("general", "none", "none"),
                   ("cosine", "segment", "temperature"), ("mlp_relu", "window", "softcap")]


def _able(q, k, v, score, mask, mods):
    p = build_problem(q, k, v, score, mask, mods)
    return [n for n in list_backends() if n != "flex" and BACKENDS.get(n).why_not(p) is None]


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", PRECISION_CASES)
@pytest.mark.parametrize("grad", [False, True])
def test_float64_inputs_keep_float64_precision(score_name, mask_kind, mod_kind, grad, small_tiles):
    b, h, lq, lk, d = 2, 2, 37, 41, 6
    score = make_score(score_name, d, "cpu").double()
    mods = [m.double() for m in make_mods(mod_kind, h, "cpu")]
    mask = make_mask(mask_kind, b, lq, lk, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=grad) for n in (lq, lk, lk))
    want = oracle_attention(q.detach(), k.detach(), v.detach(), copy.deepcopy(score), oracle_allowed(mask_kind, b, lq, lk),
                            [copy.deepcopy(m) for m in mods])
    for name in _able(q, k, v, score, mask, mods):
        with torch.set_grad_enabled(grad):
            out, w, _ = attend(q, k, v, score, mask, mods, need_weights=True, backend=name)
            out2, _, _ = attend(q, k, v, score, mask, mods, backend=name)
        for got, ref, what in ((out, want.out, "output"), (w, want.weights, "weights"), (out2, want.out, "output")):
            assert got.dtype == torch.float64, f"{name} {what}: {got.dtype}"
            torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-9, msg=lambda m: f"{name} {what}: {m}")


@pytest.mark.parametrize("mask_kind", ["key_padding", "sparse_rows", "key_padding_bool"])
@pytest.mark.parametrize("grad", [False, True])
def test_dead_rows_beside_live_rows_in_one_batch(mask_kind, grad, small_tiles):
    """Batch row 0 sees no key, row 1 sees some: zeros for the first, the oracle for the second."""
    b, h, lq, lk, d = 3, 2, 40, 35, 4
    score = make_score("scaled_dot", d, "cpu")
    mods = make_mods("alibi", h, "cpu")
    mask = make_mask(mask_kind, b, lq, lk, "cpu")
    q, k, v = (torch.randn(b, h, n, d, requires_grad=grad) for n in (lq, lk, lk))
    allowed = oracle_allowed(mask_kind, b, lq, lk)
    want = oracle_attention(q.detach().double(), k.detach().double(), v.detach().double(), copy.deepcopy(score).double(),
                            allowed, [copy.deepcopy(m).double() for m in mods])
    for name in _able(q, k, v, score, mask, mods):
        with torch.set_grad_enabled(grad):
            out, w, _ = attend(q, k, v, score, mask, mods, need_weights=True, backend=name)
        dead = ~allowed.expand(b, h, lq, lk).any(-1)
        assert torch.all(out[dead] == 0) and torch.all(w[dead] == 0), name
        torch.testing.assert_close(out.double(), want.out, atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
        torch.testing.assert_close(w.double(), want.weights, atol=2e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("buckets,max_distance,bidirectional",
                         list(itertools.product([2, 3, 4, 8, 32], [1, 2, 5, 16, 128], [True, False])))
def test_t5_buckets_over_the_option_space(buckets, max_distance, bidirectional):
    n = buckets // 2 if bidirectional else buckets
    if n // 2 == 0 or max_distance <= n // 2:
        pytest.skip("degenerate: no log-spaced range (exact part covers max_distance)")
    mod = RelativePositionBias(1, num_buckets=buckets, max_distance=max_distance, bidirectional=bidirectional)
    rel = torch.arange(-300, 301)
    want = torch.tensor([t5_bucket(int(r), bidirectional, buckets, max_distance) for r in rel])
    assert torch.equal(mod.bucket(rel), want)


def test_relative_bias_defaults_validation_init_and_dtypes():
    mod = RelativePositionBias(4)
    assert (mod.num_buckets, mod.max_distance, mod.bidirectional) == (32, 128, True)  # T5's settings
    assert mod.table.shape == (32, 4)
    torch.manual_seed(0)
    std = RelativePositionBias(64, num_buckets=64).table.std().item()
    assert 0.018 < std < 0.022  # T5-style small init: the bias starts near zero
    RelativePositionBias(1, num_buckets=2, max_distance=1)  # the smallest legal settings
    for bad in ({"heads": 0}, {"heads": 1, "num_buckets": 1}, {"heads": 1, "max_distance": 0}):
        with pytest.raises(ConfigError, match="relative_bias: needs heads > 0"):
            RelativePositionBias(**bad)
    grid = (torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.arange(4).view(1, -1, 1, 1),
            torch.arange(3).view(1, 1, -1, 1), torch.arange(5).view(1, 1, 1, -1))
    bias = mod(torch.zeros((), dtype=torch.float64), *grid)
    half = mod(torch.zeros(1, 4, 3, 5, dtype=torch.bfloat16), *grid)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), bias.bfloat16().double())
    whole = mod(torch.full((1, 4, 3, 5), 7, dtype=torch.long), *grid)  # integer scores (index tracing)
    torch.testing.assert_close(whole, 7 + bias.float())


def test_modifier_bias_default_passes_every_index_and_the_dtype():
    """A user bias declared with kind='bias' is evaluated through ``bias()``: the term must
    see the batch and head indices and come out in the requested dtype."""
    fn = lambda s, b, h, q, kv: s + b * 10.0 + h + (q - kv) * 0.5
    mod = CallableMod(fn, kind="bias")
    grid = (torch.arange(2).view(-1, 1, 1, 1), torch.arange(3).view(1, -1, 1, 1),
            torch.arange(4).view(1, 1, -1, 1), torch.arange(5).view(1, 1, 1, -1))
    got = mod.bias(*grid, torch.float64)
    assert got.dtype == torch.float64
    want = fn(torch.zeros(2, 3, 4, 5, dtype=torch.float64), *grid)  # the term added to a real score tile
    torch.testing.assert_close(got.expand(2, 3, 4, 5), want, atol=1e-5, rtol=1e-6)


def test_list_mods_default_lists_every_registered_modifier():
    assert set(list_mods()) == {"alibi", "relative_bias", "softcap", "temperature"}


def test_callable_score_default_dims_take_one_feature():
    s = CallableScore(lambda q, k: q @ k.transpose(-1, -2))
    q, k, v = torch.randn(1, 1, 3, 1), torch.randn(1, 1, 4, 1), torch.randn(1, 1, 4, 2)
    out, _, _ = attend(q, k, v, s)
    torch.testing.assert_close(out, torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


def test_modifier_defaults_names_and_low_precision_dtypes():
    import functools

    from attnkit.attention import ALiBi, SoftCap, Temperature

    assert SoftCap().cap == 50.0  # Gemma 2's attention soft-cap
    assert CallableMod(lambda s, b, h, q, kv: s).name == "<lambda>"
    assert CallableMod(functools.partial(lambda s, b, h, q, kv, c: s * c, c=2.0)).name == "score_mod"
    grid = (torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.arange(2).view(1, -1, 1, 1),
            torch.arange(3).view(1, 1, -1, 1), torch.arange(4).view(1, 1, 1, -1))
    s = torch.randn(1, 2, 3, 4).bfloat16()
    assert Temperature(2.0)(s, *grid).dtype == torch.bfloat16
    assert ALiBi(2).bias(*grid, torch.bfloat16).dtype == torch.bfloat16
    torch.testing.assert_close(ALiBi(2).bias(*grid, torch.float64),
                               -torch.tensor([2.0 ** -4, 2.0 ** -8], dtype=torch.float64).view(1, 2, 1, 1)
                               * (grid[2] - grid[3]).abs().double())


def test_alibi_bias_cache_is_reused_and_never_confuses_shapes(small_tiles):
    """A fixed bias (ALiBi) is built once per shape and reused (as SDPA users precompute it),
    and a cached band must never serve a call of another key length or head count."""
    from attnkit.attention import ALiBi
    from attnkit.attention.backends import base, blocksparse

    mods = [ALiBi(2)]
    key = base.bias_cache_key(mods, "probe")
    assert key is not None and base.bias_cache_key([RelativePositionBias(2)], "probe") is None
    grid = lambda: base.index_grid(1, 2, (0, 5), (0, 7), "cpu")
    first = base.additive_bias(mods, grid, torch.float32, key)
    assert base.additive_bias(mods, grid, torch.float32, key) is first
    score = make_score("scaled_dot", 8, "cpu")
    with torch.no_grad():
        for heads, lq, lk, dtype in ((2, 40, 40, torch.float32), (2, 40, 70, torch.float32), (2, 40, 20, torch.float32),
                                     (4, 40, 70, torch.float32), (4, 60, 70, torch.float32), (4, 60, 70, torch.float64)):
            mods = [ALiBi(heads).to(dtype)]
            q, k, v = (torch.randn(1, heads, n, 8, dtype=dtype) for n in (lq, lk, lk))
            tol = {"atol": 1e-10, "rtol": 1e-9} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-4}
            for mask_kind, frac in (("none", 0.0), ("none", 2.0), ("window", 2.0)):  # one call / tiles + band
                small_tiles.setattr(blocksparse.BlockSparseBackend, "dense_fraction", frac)
                out, _, _ = attend(q, k, v, score.to(dtype), make_mask(mask_kind, 1, lq, lk, "cpu"), mods,
                                   backend="blocksparse")
                want = oracle_attention(q.double(), k.double(), v.double(), copy.deepcopy(score).double(),
                                        oracle_allowed(mask_kind, 1, lq, lk), [copy.deepcopy(m).double() for m in mods])
                torch.testing.assert_close(out.double(), want.out, **tol)
