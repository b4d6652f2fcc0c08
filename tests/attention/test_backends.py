"""Every backend against the float64 reference, over every score x mask x modifier the
registries hold: outputs, weights and gradients (q, k, v and module parameters)."""
import copy
import itertools

import pytest
import torch

from attnkit.attention import BACKENDS, list_backends
from attnkit.attention.functional import attend, build_problem
from attnkit.errors import BackendError

from .cases import (
    MASK_KINDS,
    MOD_KINDS,
    SHAPES,
    make_mask,
    make_mods,
    make_score,
    score_names,
)

CASES = list(itertools.product(score_names(), MASK_KINDS, MOD_KINDS))
FAST_BACKENDS = [b for b in list_backends() if b != "reference"]


def _close(got, want, atol, rtol, what):
    torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def _params(score, mods):
    return [p for m in [score, *mods] for p in m.parameters() if p.requires_grad]


def _run(backend, q, k, v, score, mask, mods, need_weights, upstream):
    out, w, _ = attend(q, k, v, score, mask, mods, need_weights=need_weights, backend=backend)
    loss = (out * upstream).sum()
    if w is not None:
        loss = loss + (w * torch.linspace(0, 1, w.shape[-1], dtype=w.dtype, device=w.device)).sum()
    params = _params(score, mods)
    grads = torch.autograd.grad(loss, [q, k, v, *params], allow_unused=True)
    return out, w, grads


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", CASES, ids=["-".join(c) for c in CASES])
def test_backends_match_float64_reference(score_name, mask_kind, mod_kind, device, small_tiles):
    i = CASES.index((score_name, mask_kind, mod_kind))
    b, h, lq, lk, d = SHAPES[i % len(SHAPES)]
    score = make_score(score_name, d, device)
    mods = make_mods(mod_kind, h, device)
    mask = make_mask(mask_kind, b, lq, lk, device)
    q, k, v = (torch.randn(b, h, n, d, device=device, requires_grad=True) for n in (lq, lk, lk))
    upstream = torch.randn(b, h, lq, d, device=device)

    ref_score, ref_mods = copy.deepcopy(score).double(), [copy.deepcopy(m).double() for m in mods]
    ref = {}
    for need_weights in (False, True):  # the loss uses the weights too when they are returned
        ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
        ref[need_weights] = _run("reference", *ref_inputs, ref_score, mask, ref_mods, need_weights, upstream.double())

    p = build_problem(q, k, v, score, mask, mods)
    ran = 0
    for name in FAST_BACKENDS:
        if BACKENDS.get(name).why_not(p) is not None:
            continue
        for need_weights in (False, True):
            out, w, grads = _run(name, q, k, v, score, mask, mods, need_weights, upstream)
            ref_out, ref_w, ref_grads = ref[need_weights]
            assert torch.isfinite(out).all(), name
            _close(out, ref_out, 2e-5, 1e-4, f"{name} output")
            if need_weights:
                _close(w, ref_w, 2e-6, 1e-4, f"{name} weights")
            labels = ["q", "k", "v"] + ["param"] * (len(grads) - 3)
            for g, rg, what in zip(grads, ref_grads, labels, strict=True):
                if rg is None:
                    continue
                assert g is not None, f"{name}: no gradient for {what}"
                _close(g, rg, 1e-4, 1e-3, f"{name} grad {what} (need_weights={need_weights})")
            ran += 1
    assert ran >= 2, "at least one fast backend must accept every spec (chunked accepts all)"


@pytest.mark.parametrize("backend", ["chunked", "blocksparse", "reference"])
@pytest.mark.parametrize("mask_kind", ["none", "causal&window|prefix", "key_padding"])
def test_gradcheck_float64(backend, mask_kind, small_tiles):
    """torch.autograd.gradcheck on small float64 cases (finite differences)."""
    b, h, lq, lk, d = 1, 2, 9, 7, 3
    score = make_score("additive" if backend == "chunked" else "scaled_dot", d, "cpu").double()
    mods = make_mods("alibi", h, "cpu")
    mask = make_mask(mask_kind, b, lq, lk, "cpu")
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk))

    def f(q, k, v):
        return attend(q, k, v, score, mask, mods, backend=backend)[0]

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", FAST_BACKENDS + ["reference"])
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


@pytest.mark.parametrize("score_name,mask_kind,mod_kind", CASES[::3], ids=["-".join(c) for c in CASES[::3]])
def test_inference_outputs_and_weights_match_reference(score_name, mask_kind, mod_kind, device, small_tiles):
    """Without autograd the backends take other paths (in-place weights, no saved state)."""
    i = CASES.index((score_name, mask_kind, mod_kind))
    b, h, lq, lk, d = SHAPES[(i + 1) % len(SHAPES)]
    score = make_score(score_name, d, device)
    mods = make_mods(mod_kind, h, device)
    mask = make_mask(mask_kind, b, lq, lk, device)
    q, k, v = (torch.randn(b, h, n, d, device=device) for n in (lq, lk, lk))
    with torch.no_grad():
        ref_o, ref_w, _ = attend(q.double(), k.double(), v.double(), copy.deepcopy(score).double(), mask,
                                 [copy.deepcopy(m).double() for m in mods], need_weights=True, backend="reference")
        p = build_problem(q, k, v, score, mask, mods)
        for name in FAST_BACKENDS + ["flex"] * (device.type == "cuda"):
            if BACKENDS.get(name).why_not(p) is not None or name == "flex":
                continue
            out, w, _ = attend(q, k, v, score, mask, mods, need_weights=True, backend=name)
            torch.testing.assert_close(out.double(), ref_o, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(w.double(), ref_w, atol=2e-6, rtol=1e-4)
            out2, _, _ = attend(q, k, v, score, mask, mods, backend=name)
            torch.testing.assert_close(out2.double(), ref_o, atol=2e-5, rtol=1e-4)


@pytest.mark.slow_compile
def test_flex_forward_on_cpu_matches_reference():
    """FlexAttention (compiled, forward only on CPU) with attnkit's own mask and modifier."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    from attnkit.attention import ALiBi, causal, window

    q, k, v = (torch.randn(1, 2, 128, 16) for _ in range(3))
    score = make_score("scaled_dot", 16, "cpu")
    mask, mods = causal() & window(20), [ALiBi(2)]
    with torch.no_grad():
        out, _, d = attend(q, k, v, score, mask, mods, backend="flex")
        ref, _, _ = attend(q.double(), k.double(), v.double(), copy.deepcopy(score).double(), mask,
                           [m.double() for m in copy.deepcopy(mods)], backend="reference")
    assert d.backend == "flex"
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
