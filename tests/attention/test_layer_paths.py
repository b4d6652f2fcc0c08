"""Paths through the attention modules that the numerical suites did not reach (found by
mutation testing, docs/contributing.md): the cached keys/values of incremental decoding,
padding given only as a mask, ``explain_dispatch`` on a self-attention call, the names in
dtype errors, the bias cache's size limit."""
import pytest
import torch

from attnkit.attention import Attention, AttentionPooling, AttentionSpec, MultiHeadAttention, explain_dispatch
from attnkit.attention.mods import ALiBi
from attnkit.attention.backends import base
from attnkit.errors import ConfigError, ShapeError


@pytest.mark.parametrize("padding", ["lengths", "mask"])
def test_cached_keys_and_values_give_what_projecting_the_context_gives(padding):
    """``forward(x, kv=project_kv(context))`` (a decoder's cache) with padding and segment ids
    equals ``forward(x, context)``: the padding and segments reach the cached path's masks."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, heads=4, kv_dim=12).eval()
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    lengths = torch.tensor([7, 4])
    pad = {"lengths": lengths} if padding == "lengths" else {"key_padding_mask": torch.arange(7) < lengths[:, None]}
    segments = (torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]), torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]]))
    want, want_w = mha(x, context, segment_ids=segments, need_weights=True, **pad)
    got, got_w = mha(x, kv=mha.project_kv(context), segment_ids=segments, need_weights=True, **pad)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_w, want_w)
    assert float(got_w[1, :, :, 4:].abs().max()) == 0.0  # padded keys get no weight
    assert float(got_w[0, :, :2, 3:].abs().max()) == 0.0  # nor keys of another segment
    with pytest.raises(ShapeError, match=r"x: expected \[B, L, 16\], got \[2, 5, 15\]"):
        mha(torch.randn(2, 5, 15), kv=mha.project_kv(context))


def test_padding_given_only_as_a_mask_keeps_nan_in_padding_out_of_the_output():
    torch.manual_seed(0)
    att = Attention(score="additive", q_dim=8, k_dim=8, hidden=8).eval()
    q, k = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    clean, _ = att(q, k, key_padding_mask=keep)
    k[1, 4:] = float("nan")
    out, _ = att(q, k, key_padding_mask=keep)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, clean)


def test_explain_dispatch_of_self_attention_and_its_dtype_check():
    att = Attention(score="scaled_dot", q_dim=8, k_dim=8)
    assert explain_dispatch(att, torch.randn(2, 4, 8)).backend in ("sdpa", "blocksparse", "chunked")
    additive = Attention(score="additive", q_dim=8, k_dim=8, hidden=4)
    with pytest.raises(ShapeError, match="query: dtype torch.float64 differs from the module's torch.float32"):
        explain_dispatch(additive, torch.randn(2, 4, 8, dtype=torch.float64))


def test_dtype_errors_name_the_argument():
    with pytest.raises(ShapeError, match=r"^x: expected a floating-point tensor, got torch.int64"):
        AttentionPooling(8)(torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"^x: expected a floating-point tensor, got torch.int64"):
        MultiHeadAttention(8, heads=2)(torch.ones(2, 3, 8, dtype=torch.long))


def test_a_bad_modifier_is_named_by_its_place_in_the_list():
    with pytest.raises(ConfigError, match=r"^mods\[1\]: expected a modifier name"):
        AttentionSpec(mods=["alibi", 42], heads=2).build_mods()


def test_the_bias_cache_stays_within_its_byte_budget(monkeypatch):
    """Cached fixed biases are evicted (least recently used first) once their bytes pass
    ``BIAS_CACHE_BYTES``, a bias counted as numel x element size."""
    monkeypatch.setattr(base, "_bias_cache", type(base._bias_cache)())
    one = 2 * 5 * 7 * 4  # an ALiBi bias [1, 2, 5, 7] in float32
    monkeypatch.setattr(base, "BIAS_CACHE_BYTES", 2 * one)
    mods = [ALiBi(2)]
    grid = lambda: base.index_grid(1, 2, (0, 5), (0, 7), "cpu")
    keys = [base.bias_cache_key(mods, name) for name in "abc"]
    for key in keys:
        base.additive_bias(mods, grid, torch.float32, key)
    assert list(base._bias_cache) == keys[1:]  # the first one made room
    assert [t.numel() * t.element_size() for t in base._bias_cache.values()] == [one, one]


def test_the_block_sparse_plan_cache_keeps_the_most_recent_plans_that_fit(monkeypatch):
    from attnkit.attention.backends import blocksparse

    monkeypatch.setattr(blocksparse, "_plans", type(blocksparse._plans)())
    monkeypatch.setattr(blocksparse, "_plan_bytes", lambda plan: 100)
    monkeypatch.setattr(blocksparse, "PLAN_CACHE_BYTES", 250)
    for name in "abcd":
        blocksparse._plans[name] = {"plan": name}
    blocksparse.trim_plan_cache()
    assert list(blocksparse._plans) == ["c", "d"]  # 200 bytes fit; the oldest two went


@pytest.mark.parametrize("score", ["dot", "scaled_dot"])
@pytest.mark.parametrize("lengths", [(1, 1), (7, 7), (40, 40), (9, 23)])
def test_plain_causal_attention_equals_the_formula(score, lengths):
    """A causal mask alone, no modifiers, no weights: the block-sparse backend hands it to the
    fused kernel's own causal flag, with the score's scale (1 for ``dot``)."""
    from tests.attention.cases import make_score
    from tests.attention.oracle import oracle_attention

    from attnkit.attention import attend, causal

    torch.manual_seed(1)
    lq, lk = lengths
    q, k, v = torch.randn(2, 3, lq, 8), torch.randn(2, 3, lk, 8), torch.randn(2, 3, lk, 5)
    s = make_score(score, 8, "cpu")
    with torch.no_grad():
        out, _, how = attend(q, k, v, s, causal())
    allowed = torch.arange(lq)[:, None] >= torch.arange(lk)[None, :]
    want = oracle_attention(q.double(), k.double(), v.double(), s.double(), allowed.view(1, 1, lq, lk))
    assert how.backend == "blocksparse"
    torch.testing.assert_close(out.double(), want.out, atol=1e-5, rtol=1e-5)


def test_combined_masks_bound_the_keys_by_intersection_and_union():
    from attnkit.attention import causal, window

    both = window(2) & causal()
    assert both.kv_bounds(10, 14, 100) == (8, 14)  # window's [8, 16) within causal's [0, 14)
    either = window(2) | causal()
    assert either.kv_bounds(10, 14, 100) == (0, 16)
    users = lambda b, h, q, kv: q < 0  # noqa: E731  (a user's mask: no bounds, so every key)
    assert (window(0) & users).kv_bounds(3, 5, 50) == (3, 5)  # the window's bounds remain
    assert (window(0) | users).kv_bounds(3, 5, 50) == (0, 50)  # or'ed with every key: every key


def test_or_of_a_head_dependent_mask_keeps_each_head():
    from attnkit.attention import causal
    from attnkit.attention.masks import as_mask, evaluate_mask

    first_head_sees_all = as_mask(lambda b, h, q, kv: h == 0)
    got = evaluate_mask(first_head_sees_all | causal(), 1, 2, (0, 4), (0, 4), "cpu").expand(1, 2, 4, 4)
    tril = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(got[0, 0], torch.ones(4, 4, dtype=torch.bool)) and torch.equal(got[0, 1], tril)
    got = evaluate_mask(first_head_sees_all & causal(), 1, 2, (0, 4), (0, 4), "cpu").expand(1, 2, 4, 4)
    assert torch.equal(got[0, 0], tril) and not got[0, 1].any()
    second_row_sees_all = as_mask(lambda b, h, q, kv: b == 1)  # on the right of | this time, by batch row
    got = evaluate_mask(causal() | second_row_sees_all, 2, 1, (0, 4), (0, 4), "cpu").expand(2, 1, 4, 4)
    assert torch.equal(got[0, 0], tril) and bool(got[1, 0].all())


def test_a_users_score_with_its_own_tile_backward_gets_the_gradients_of_its_formula():
    """A Score subclass may write out its tile backward (``block_backward(qf, kf, dS)``, no
    state kept): the chunked backend then calls it instead of autograd through ``block``; the
    gradients equal autograd through the formula (float64)."""
    from attnkit.attention import attend
    from attnkit.attention.scores import Score

    calls = []

    class ScaledBy3(Score):
        def block(self, qf, kf):
            return 3.0 * qf @ kf.transpose(-1, -2)

        def block_backward(self, qf, kf, ds):
            calls.append(ds.shape)
            return 3.0 * ds @ kf, 3.0 * ds.transpose(-1, -2) @ qf, {}

    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 2, n, 4, dtype=torch.float64, requires_grad=True) for n in (5, 7, 7))
    out, _, how = attend(q, k, v, ScaledBy3(4, 4), backend="chunked")
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), g)
    want = torch.autograd.grad(torch.softmax(3.0 * q @ k.transpose(-1, -2), -1) @ v, (q, k, v), g)
    assert calls and how.backend == "chunked"
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_the_block_sparse_backend_says_it_is_for_the_cpu():
    """Off the CPU the dispatcher's record says why block-sparse was passed over (tensors on
    the meta device stand in for an accelerator's: no GPU is needed to read the reason)."""
    from attnkit.attention.backends import BACKENDS, Problem
    from attnkit.attention.scores import build_score

    t = torch.empty(1, 1, 4, 8, device="meta")
    why = BACKENDS.get("blocksparse").why_not(Problem(t, t, t, build_score("scaled_dot", 8, 8)))
    assert why == "CPU only (built on the CPU flash kernel); FlexAttention covers GPUs"


def test_padding_positions_are_worked_out_where_the_inputs_live():
    """``real_positions`` puts the lengths on the inputs' device (meta tensors stand in for an
    accelerator's: mixing devices is an error there as on a GPU)."""
    from attnkit.attention.layers import real_positions

    x = torch.empty(2, 5, 3, device="meta")
    got = real_positions(x, lengths=torch.tensor([5, 3]))
    assert got.device.type == "meta" and got.shape == (2, 5, 1)
    got = real_positions(torch.zeros(2, 5, 3), lengths=torch.tensor([5, 3]), key_padding_mask=torch.ones(2, 5, dtype=torch.bool))
    assert got[:, :, 0].tolist() == [[True] * 5, [True] * 3 + [False] * 2]


def test_a_graph_being_exported_gets_the_plain_formula(monkeypatch):
    from torch.onnx._internal.exporter import _flags
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    from attnkit.attention.pair_kernel import tracing
    from attnkit.attention import choose_backend
    from attnkit.attention.functional import build_problem
    from attnkit.attention.scores import build_score

    q = torch.randn(1, 1, 3, 8)
    p = build_problem(q, q, q, build_score("additive", 8, 8, hidden=4))
    assert choose_backend(p).backend == "chunked"
    for holder, flag in ((GLOBALS, "_in_onnx_export"), (_flags, "_is_onnx_exporting")):  # either exporter's flag
        with monkeypatch.context() as m:
            m.setattr(holder, flag, True)
            assert torch.onnx.is_in_onnx_export()  # the flag torch itself reads
            d = choose_backend(p)
            assert (d.backend, d.reason) == ("reference", "exporting a graph: the fused and custom-gradient kernels "
                                                          "have no ONNX form, the plain formula does (the runtime fuses it)")
            assert tracing()
    assert choose_backend(p).backend == "chunked" and not tracing()


def test_the_export_check_asks_torch_where_its_flags_are_elsewhere(monkeypatch):
    from attnkit.attention import pair_kernel

    monkeypatch.setattr(pair_kernel, "_ONNX_FLAGS", [None])  # a torch whose flag holders were not found
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert pair_kernel.exporting() and pair_kernel.tracing()


def test_dispatch_and_input_errors_say_what_and_where():
    from attnkit.attention import attend, choose_backend
    from attnkit.attention.functional import build_problem
    from attnkit.attention.scores import build_score
    from attnkit.errors import UnknownNameError

    t = torch.empty(1, 1, 3, 8, device="meta")  # a device without automatic exclusions (CPU always passes over flex)
    assert choose_backend(build_problem(t, t, t, build_score("scaled_dot", 8, 8))).reason == "first able for meta, grad=no"
    with pytest.raises(UnknownNameError, match=r"^score: unknown score 'nonexistent'; known: additive"):
        build_score("nonexistent", 4, 4)
    q = torch.randn(1, 1, 3, 8)
    with pytest.raises(ShapeError, match=r"^value: expected rank 4 \[B, Hk, Lk, Dv\], got shape \[1, 3, 8\]"):
        attend(q, q, q[0], build_score("scaled_dot", 8, 8))
    with pytest.raises(ShapeError, match=r"^key: expected rank 4 \[B, Hk, Lk, Dk\], got shape \[1, 3, 8\]"):
        attend(q, q[0], q, build_score("scaled_dot", 8, 8))



def _position_bias(scale: float):
    """A user's bias modifier on *absolute* positions (not relative: no shared band), with a
    cache key, so the block-sparse backend caches it per tile."""
    from attnkit.attention.mods import ScoreMod

    class PositionBias(ScoreMod):
        kind = "bias"

        def forward(self, s, b, h, q, kv):
            return s + scale * torch.sin(0.3 * kv + 0.1 * q * kv)

        def cache_key(self):
            return ("position-bias", scale)

    return PositionBias()


@pytest.mark.parametrize("masked, tiles", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("with_alibi", [False, True])
def test_cached_biases_on_absolute_positions_stay_apart_and_add_up(small_tiles, with_alibi, masked, tiles):
    """Two such modifiers that differ only in their scale must not share a cache entry (the
    unmasked one-call path caches the whole bias: checked that it does); with ALiBi beside one
    of them both terms add (block-sparse tiles, one call)."""
    if not tiles:
        small_tiles.undo()
    from attnkit.attention import attend, window
    from attnkit.attention.mods import ALiBi
    from attnkit.attention.scores import build_score
    from attnkit.attention.backends import base, blocksparse

    small_tiles.setattr(base, "_bias_cache", type(base._bias_cache)())
    small_tiles.setattr(blocksparse, "_plans", type(blocksparse._plans)())
    torch.manual_seed(3)
    h, lq, lk = 2, 40, 40
    q, k, v = torch.randn(1, h, lq, 8), torch.randn(1, h, lk, 8), torch.randn(1, h, lk, 8)
    score = build_score("scaled_dot", 8, 8)
    i, j = torch.arange(lq, dtype=torch.float64)[:, None], torch.arange(lk, dtype=torch.float64)[None, :]
    allowed = (i - j).abs() <= 5 if masked else torch.ones(lq, lk, dtype=torch.bool)
    slopes = torch.tensor([2.0 ** -4, 2.0 ** -8], dtype=torch.float64).view(1, h, 1, 1)
    for scale in (0.5, 2.0):
        mods = ([ALiBi(h)] if with_alibi else []) + [_position_bias(scale)]
        with torch.no_grad():
            out, _, how = attend(q, k, v, score, window(5) if masked else None, mods)
        if not masked:
            assert len(base._bias_cache) == (1 if scale == 0.5 else 2)  # one entry per scale
        s = (q.double() @ k.double().transpose(-1, -2)) / 8 ** 0.5 + scale * torch.sin(0.3 * j + 0.1 * i * j)
        if with_alibi:
            s = s - slopes * (i - j).abs()
        w = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)
        assert how.backend == "blocksparse"
        torch.testing.assert_close(out.double(), w @ v.double(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path, size, length", [("one call", 5, 40), ("tiles", 5, 40), ("band", 16, 128)])
@pytest.mark.parametrize("dv", [4, 13])
def test_values_with_their_own_head_size_under_a_mask(small_tiles, path, size, length, dv):
    """Values narrower or wider than queries and keys (``attend`` allows it) through the
    block-sparse backend, whose flash kernel takes one head size (tiles and the one-call path),
    forward and gradients against the formula (a RuntimeError from the kernel before)."""
    from attnkit.attention import attend, window
    from attnkit.attention.scores import build_score
    from tests.attention.oracle import oracle_attention

    from attnkit.attention.backends import blocksparse

    if path == "one call":
        small_tiles.undo()
    ran = []
    for kernel in ("BandFlash", "_BlockSparseFlash"):
        real = getattr(blocksparse, kernel).apply
        small_tiles.setattr(getattr(blocksparse, kernel), "apply",
                            lambda *a, real=real, kernel=kernel: ran.append(kernel) or real(*a))
    torch.manual_seed(4)
    q, k = (torch.randn(2, 2, length, 8, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 2, length, dv, requires_grad=True)
    score = build_score("scaled_dot", 8, 8)
    out, _, how = attend(q, k, v, score, window(size))
    assert how.backend == "blocksparse" and out.shape == (2, 2, length, dv) and out.is_contiguous()
    assert ran == {"one call": [], "tiles": ["_BlockSparseFlash"], "band": ["BandFlash"]}[path]
    i = torch.arange(length)
    want = oracle_attention(q.double(), k.double(), v.double(), score.double(), ((i[:, None] - i).abs() <= size)).out
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g.float()), torch.autograd.grad(want, (q, k, v), g)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_lengths_covering_every_key_add_no_mask_and_give_the_same_result():
    """Lengths that hide nothing (a batch of one, or of equal lengths) add no padding mask and
    no zeroing: the call is the unmasked one, with the unmasked output; one short length
    brings both back (and its NaN padding stays out of every output)."""
    from attnkit.attention.layers import real_positions, runtime_mask

    torch.manual_seed(1)
    full = torch.tensor([6, 6])
    assert runtime_mask(2, 6, lengths=full) == [] and real_positions(torch.zeros(2, 6, 3), lengths=full) is None
    assert len(runtime_mask(2, 6, lengths=torch.tensor([6, 5]))) == 1
    assert real_positions(torch.zeros(2, 6, 3), lengths=torch.tensor([6, 5]))[:, :, 0].sum().item() == 11
    assert len(runtime_mask(0, 6, lengths=torch.zeros(0, dtype=torch.long))) == 1  # an empty batch: as before
    pool = AttentionPooling(8, score="additive", hidden=4).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(pool(x, lengths=full, need_weights=True)[1], pool(x, need_weights=True)[1])
        x[1, 5] = float("nan")
        out, w = pool(x, lengths=torch.tensor([6, 5]), need_weights=True)
    assert torch.isfinite(out[1]).all() and w[1, 0, 5] == 0
    mha = MultiHeadAttention(8, heads=2).eval()
    with torch.no_grad():
        y = torch.randn(2, 6, 8)
        torch.testing.assert_close(mha(y, lengths=full)[0], mha(y)[0])


def test_an_exported_graph_keeps_the_padding_mask_of_a_full_length_example(monkeypatch):
    """While a graph is traced (ONNX export) the padding mask stays even when the example's
    lengths hide nothing: the graph must mask the padded batches it will see later."""
    from attnkit.attention import pair_kernel
    from attnkit.attention.layers import real_positions, runtime_mask

    full = torch.tensor([6, 6])
    monkeypatch.setattr(pair_kernel.torch.jit, "is_tracing", lambda: True)
    assert len(runtime_mask(2, 6, lengths=full)) == 1
    assert real_positions(torch.zeros(2, 6, 3), lengths=full) is not None
