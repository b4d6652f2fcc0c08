"""Every backend (the plain ``reference`` one included) against the independent float64
oracle of ``oracle.py``, over every score x mask x modifier the registries hold: outputs,
weights and gradients (q, k, v and module parameters), with tiles small enough that several
query blocks, partial tiles and fully masked rows beside visible tiles all run."""
import copy
import itertools
import os

import pytest
import torch

from attnkit.attention import BACKENDS, list_backends
from attnkit.attention.backends import band, blocksparse
from attnkit.attention.backends.tiles import plan_tiles
from attnkit.attention.functional import attend, build_problem
from attnkit.attention.masks import as_mask
from attnkit.errors import BackendError

from .cases import (
    MASK_KINDS,
    MOD_KINDS,
    SHAPES,
    make_mask,
    make_mods,
    make_score,
    oracle_allowed,
    score_names,
)
from .oracle import oracle_attention



def pairwise_cases(scores, masks, mods):
    """A few triples covering every (score, mask), (score, modifier) and (mask, modifier)
    pair: for each (mask, modifier) pair, the score that covers most uncovered pairs."""
    need = {("s", a, b) for a in scores for b in masks} | {("m", a, c) for a in scores for c in mods}
    out = []
    for b, c in itertools.product(masks, mods):
        a = max(scores, key=lambda x: (("s", x, b) in need) + (("m", x, c) in need))
        need -= {("s", a, b), ("m", a, c)}
        out.append((a, b, c))
    return out


CASES = list(itertools.product(score_names(), MASK_KINDS, MOD_KINDS))
# ATTNKIT_TEST_GRID=pairwise (set by benchmarks/mutation.py) skips the cases outside a
# pairwise-covering subset, so that a mutant costs seconds, not a minute (the test ids stay
# the same, as mutmut's recorded test selection needs); `make test` runs the full product.
PAIRWISE = set(pairwise_cases(score_names(), MASK_KINDS, MOD_KINDS))
OUTSIDE_PAIRWISE = pytest.mark.skipif(os.environ.get("ATTNKIT_TEST_GRID") == "pairwise",
                                      reason="ATTNKIT_TEST_GRID=pairwise: outside the pairwise subset")


def grid(cases):
    """``cases`` as pytest params, those outside the pairwise subset marked to skip under
    ATTNKIT_TEST_GRID=pairwise."""
    return [pytest.param(*c, id="-".join(c), marks=[] if c in PAIRWISE else [OUTSIDE_PAIRWISE]) for c in cases]
BACKEND_NAMES = list_backends()  # the reference backend is under test too
# Forced FlexAttention on CPU compiles per shape and mask; after dynamo's recompile limit it
# silently runs eager (unfused), so it is held to the oracle in its own compiled test below.
SKIP_ON_CPU = {"flex"}
# The block-sparse backend runs a problem tile by tile, as one fused call for all query blocks
# stacked in a band, or (when the visible tiles cover most of their span) as one dense fused
# call: every path is checked on every case (dense_fraction, band_waste).
BLOCKSPARSE_PATHS = {"tiles": (2.0, 0.0), "band": (2.0, float("inf")), "one_call": (0.0, 0.0)}


def _close(got, want, atol, rtol, what):
    torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def _params(score, mods):
    return [p for m in [score, *mods] for p in m.parameters() if p.requires_grad]


def _loss(out, w, upstream):
    loss = (out * upstream).sum()
    if w is not None:  # the loss uses the weights too when they are returned
        loss = loss + (w * torch.linspace(0, 1, w.shape[-1], dtype=w.dtype, device=w.device)).sum()
    return loss


def _grads(loss, q, k, v, score, mods):
    return torch.autograd.grad(loss, [q, k, v, *_params(score, mods)], allow_unused=True)


def oracle_run(q, k, v, score, mods, mask_kind, need_weights, upstream):
    """Oracle output, weights and gradients, in float64 on copies of the modules."""
    score, mods = copy.deepcopy(score).double().cpu(), [copy.deepcopy(m).double().cpu() for m in mods]
    q, k, v = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    allowed = oracle_allowed(mask_kind, q.shape[0], q.shape[2], k.shape[2])
    r = oracle_attention(q, k, v, score, allowed, mods)
    grads = _grads(_loss(r.out, r.weights if need_weights else None, upstream.double().cpu()), q, k, v, score, mods)
    return r.out, r.weights, grads


def _variants(name, monkeypatch):
    """``(label, setup)`` pairs: the ways a backend is run on every case."""
    if name != "blocksparse":
        return [(name, lambda: None)]
    return [(f"blocksparse/{path}", lambda s=setting: _blocksparse_path(monkeypatch, *s))
            for path, setting in BLOCKSPARSE_PATHS.items()]


def _blocksparse_path(monkeypatch, dense_fraction, band_waste):
    monkeypatch.setattr(blocksparse.BlockSparseBackend, "dense_fraction", dense_fraction)
    monkeypatch.setattr(blocksparse.BlockSparseBackend, "band_waste", band_waste)


def check_against_oracle(q, k, v, score, mask_kind, mods, monkeypatch, need_grad=True):
    """Run every able backend (and path) on one problem and compare with the oracle."""
    b, lq, lk = q.shape[0], q.shape[2], k.shape[2]
    mask = make_mask(mask_kind, b, lq, lk, q.device)
    upstream = torch.randn(q.shape[:3] + v.shape[-1:], device=q.device)
    want = {nw: oracle_run(q, k, v, score, mods, mask_kind, nw, upstream) for nw in (False, True)}
    p = build_problem(q, k, v, score, mask, mods)
    ran = []
    for name in BACKEND_NAMES:
        if BACKENDS.get(name).why_not(p) is not None or (name in SKIP_ON_CPU and q.device.type == "cpu"):
            continue
        for label, setup in _variants(name, monkeypatch):
            setup()
            for need_weights in (False, True):
                with torch.set_grad_enabled(need_grad):
                    out, w, _ = attend(q, k, v, score, mask, mods, need_weights=need_weights, backend=name)
                ref_out, ref_w, ref_grads = want[need_weights]
                assert torch.isfinite(out).all(), label
                _close(out, ref_out, 2e-5, 1e-4, f"{label} output")
                if need_weights:
                    _close(w, ref_w, 2e-6, 1e-4, f"{label} weights")
                if need_grad:
                    grads = _grads(_loss(out, w, upstream), q, k, v, score, mods)
                    labels = ["q", "k", "v"] + ["param"] * (len(grads) - 3)
                    for g, rg, what in zip(grads, ref_grads, labels, strict=True):
                        if rg is None:
                            continue
                        assert g is not None, f"{label}: no gradient for {what}"
                        _close(g, rg, 1e-4, 1e-3, f"{label} grad {what} (need_weights={need_weights})")
            ran.append(label)
    return ran


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", grid(CASES))
def test_backends_match_the_oracle(score_name, mask_kind, mod_kind, device, small_tiles):
    i = CASES.index((score_name, mask_kind, mod_kind))
    b, h, lq, lk, d = SHAPES[i % len(SHAPES)]
    score = make_score(score_name, d, device)
    mods = make_mods(mod_kind, h, device)
    q, k, v = (torch.randn(b, h, n, d, device=device, requires_grad=True) for n in (lq, lk, lk))
    ran = check_against_oracle(q, k, v, score, mask_kind, mods, small_tiles)
    assert {"reference", "chunked"} <= set(ran), "the reference and chunked backends accept every spec"


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", grid(CASES[::2]))
def test_inference_paths_match_the_oracle(score_name, mask_kind, mod_kind, device, small_tiles):
    """Without autograd the backends take other paths (in-place weights, no saved state)."""
    i = CASES.index((score_name, mask_kind, mod_kind))
    b, h, lq, lk, d = SHAPES[(i + 1) % len(SHAPES)]
    score = make_score(score_name, d, device)
    mods = make_mods(mod_kind, h, device)
    q, k, v = (torch.randn(b, h, n, d, device=device) for n in (lq, lk, lk))
    check_against_oracle(q, k, v, score, mask_kind, mods, small_tiles, need_grad=False)


GQA_CASES = [("scaled_dot", "causal", "alibi"), ("general", "key_padding", "none"),
             ("additive", "segment", "relative_bias"), ("cosine", "sparse_rows", "temperature"),
             ("dot", "none", "none")]


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", GQA_CASES)
def test_grouped_query_heads_match_the_oracle(score_name, mask_kind, mod_kind, device, small_tiles):
    """Four query heads over two key/value heads: query head h reads kv head h // 2."""
    b, h, hk, lq, lk, d = 2, 4, 2, 37, 41, 6
    score = make_score(score_name, d, device)
    mods = make_mods(mod_kind, h, device)
    q = torch.randn(b, h, lq, d, device=device, requires_grad=True)
    k, v = (torch.randn(b, hk, lk, d, device=device, requires_grad=True) for _ in range(2))
    check_against_oracle(q, k, v, score, mask_kind, mods, small_tiles)


def test_small_tiles_reach_dead_rows_beside_visible_tiles(small_tiles):
    """The fixture must put fully masked rows of one tile next to a visible tile of the same
    query block (the case the block-sparse log-sum-exp merge has to get right)."""
    lq = lk = 45
    mask = as_mask(make_mask("sparse_rows", 1, lq, lk, "cpu"))
    plan = plan_tiles(mask, 1, 1, lq, lk, blocksparse.BlockSparseBackend.block_q,
                      blocksparse.BlockSparseBackend.block_k, "cpu", merge=True)
    later = plan[2]  # queries [32, 45): the first key tile and the diagonal, nothing between
    assert [(t.k0, t.k1) for t in later.tiles] == [(0, 16), (32, 45)]
    first = later.tiles[0].allowed
    assert first is not None and not bool(first.any(-1).all()) and bool(first.any(-1).any())


@pytest.mark.parametrize("backend", ["chunked", "blocksparse", "blocksparse/band", "reference"])
@pytest.mark.parametrize("mask_kind", ["none", "causal&window|prefix", "key_padding", "sparse_rows"])
def test_gradcheck_float64(backend, mask_kind, small_tiles):
    """torch.autograd.gradcheck on small float64 cases (finite differences)."""
    b, h, lq, lk, d = 1, 2, 35, 33, 3
    score = make_score("additive" if backend == "chunked" else "scaled_dot", d, "cpu").double()
    mods = make_mods("alibi", h, "cpu")
    band_calls, forced_band = [], backend == "blocksparse/band"
    if forced_band:  # the band takes no bias modifiers: forced, without them, on
        backend, mods, b = "blocksparse", [], 2  # two batch rows (key padding's first row has no keys)
        small_tiles.setattr(blocksparse.BlockSparseBackend, "band_waste", float("inf"))
    real = band._flash
    small_tiles.setattr(band, "_flash", lambda *a, **k: band_calls.append(1) or real(*a, **k))
    mask = make_mask(mask_kind, b, lq, lk, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk))

    def f(q, k, v):
        return attend(q, k, v, score, mask, mods, backend=backend)[0]

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-5)
    assert bool(band_calls) == forced_band  # the band ran where it was forced (and only there)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_fully_masked_rows_are_zero_not_nan(backend, small_tiles):
    b, h, lq, lk, d = 2, 2, 20, 18, 4
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for n in (lq, lk, lk))
    score = make_score("scaled_dot", d, "cpu")
    mask = make_mask("key_padding", b, lq, lk, "cpu")  # batch row 0 has no keys
    try:
        out, w, _ = attend(q, k, v, score, mask, need_weights=True, backend=backend)
    except BackendError:
        pytest.skip(f"{backend} does not run this spec here")
    assert torch.all(out[0] == 0) and torch.all(w[0] == 0)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_forcing_an_unable_backend_says_why():
    q = k = v = torch.randn(1, 1, 4, 4)
    with pytest.raises(BackendError, match="not a dot product"):
        attend(q, k, v, make_score("additive", 4, "cpu"), backend="sdpa")
    with pytest.raises(Exception, match="known: .*chunked"):
        attend(q, k, v, make_score("dot", 4, "cpu"), backend="nope")


FLEX_CASES = [("causal&window|prefix", "alibi"), ("key_padding", "softcap"), ("segment", "relative_bias")]


@pytest.mark.slow_compile
@pytest.mark.parametrize("mask_kind,mod_kind", FLEX_CASES)
def test_forced_flex_inference_matches_the_oracle(mask_kind, mod_kind, device):
    """FlexAttention (compiled; forward only on CPU) forced for inference, with attnkit's
    masks (fully masked rows included) and modifiers, with and without weights."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    torch._dynamo.reset()  # a fresh compile: never the eager fallback after the recompile limit
    b, h, lq, lk, d = 2, 2, 128, 128, 16
    q, k, v = (torch.randn(b, h, n, d, device=device) for n in (lq, lk, lk))
    score = make_score("scaled_dot", d, device)
    mods = make_mods(mod_kind, h, device)
    mask = make_mask(mask_kind, b, lq, lk, device)
    want = oracle_attention(q.double().cpu(), k.double().cpu(), v.double().cpu(), copy.deepcopy(score).double().cpu(),
                            oracle_allowed(mask_kind, b, lq, lk), [copy.deepcopy(m).double().cpu() for m in mods])
    with torch.no_grad():
        out, _, d_ = attend(q, k, v, score, mask, mods, backend="flex")
        out_w, w, _ = attend(q, k, v, score, mask, mods, need_weights=True, backend="flex")
    assert d_.backend == "flex"
    _close(out.cpu(), want.out, 2e-5, 1e-4, "flex output")
    _close(out_w.cpu(), want.out, 2e-5, 1e-4, "flex output with weights")
    _close(w.cpu(), want.weights, 2e-6, 1e-4, "flex weights")
