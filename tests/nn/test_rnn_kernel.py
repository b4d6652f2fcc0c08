"""The fused LSTM/GRU inference kernel against the LSTM and GRU equations written out in
float64, on random shapes that reach every loop of the kernel (register blocks, single
vectors, scalar tails), padding, empty sequences and several layers; when it runs and when
PyTorch's RNN does; the weights it packs following the module's."""
import copy

import pytest
import torch
from torch import nn

from attnkit.nn import GRUEncoder, LSTMEncoder, rnn_kernel
from tests.native_build import build_where_a_compiler_is

needs_kernel = pytest.mark.skipif(rnn_kernel.kernel() is None,
                                  reason=f"fused LSTM/GRU kernel not built here: {rnn_kernel.why_not()}")


def rnn_reference(rnn: nn.RNNBase, x: torch.Tensor, lengths, hx=None, finals: bool = False):
    """``rnn`` over each sequence alone, from the equations, in float64: LSTM gates i, f, g, o;
    GRU gates r, z, n with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; from the initial
    states ``hx`` (``h0`` or ``(h0, c0)``, ``[layers * dirs, B, H]``; None: zeros). With
    ``finals``, ``(out, h_n, c_n)``: each direction's state after the sequence's last step."""
    gru = isinstance(rnn, nn.GRU)
    x = x.double()
    dirs = 2 if rnn.bidirectional else 1
    hsz = rnn.hidden_size
    slots = rnn.num_layers * dirs
    h0, c0 = ((hx if isinstance(hx, tuple) else (hx, None)) if hx is not None else (None, None))
    h0 = torch.zeros(slots, x.shape[0], hsz) if h0 is None else h0
    c0 = torch.zeros(slots, x.shape[0], hsz) if c0 is None else c0
    h_n, c_n = torch.zeros(slots, x.shape[0], hsz, dtype=torch.float64), torch.zeros_like(h0, dtype=torch.float64)
    out = torch.zeros(x.shape[0], x.shape[1], dirs * hsz, dtype=torch.float64)
    for b, n in enumerate(int(v) for v in lengths):
        seq = x[b, :n]
        for layer in range(rnn.num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = (getattr(rnn, w + sfx).detach().double() for w in ("weight_ih", "weight_hh"))
                b_ih, b_hh = ((getattr(rnn, b + sfx).detach().double() if rnn.bias
                               else torch.zeros(w_ih.shape[0], dtype=torch.float64)) for b in ("bias_ih", "bias_hh"))
                slot = layer * dirs + d
                h, c = h0[slot, b].double(), c0[slot, b].double()
                states = [None] * n
                for t in (range(n) if d == 0 else reversed(range(n))):
                    if gru:
                        xr, xz, xn = (w_ih @ seq[t] + b_ih).split(hsz)
                        hr, hz, hn = (w_hh @ h + b_hh).split(hsz)
                        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
                    else:
                        i, f, g, o = (w_ih @ seq[t] + w_hh @ h + b_ih + b_hh).split(hsz)
                        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                        h = torch.sigmoid(o) * torch.tanh(c)
                    states[t] = h
                h_n[slot, b], c_n[slot, b] = h, c
                outs.append(torch.stack(states) if n else torch.zeros(0, hsz, dtype=torch.float64))
            seq = torch.cat(outs, -1)
        out[b, :n] = seq
    return (out, h_n, c_n) if finals else out


SHAPES = [  # batch, time, input dim, hidden (3 or 4 x hidden gate columns: blocks of 8 vectors, single vectors, scalars)
    (1, 1, 5, 3),
    (1, 9, 16, 40),
    (3, 7, 6, 17),
    (2, 12, 33, 64),
    (4, 5, 8, 130),
]


@needs_kernel
@pytest.mark.parametrize("b,t,d,h", SHAPES, ids=[f"B{b}-T{t}-D{d}-H{h}" for b, t, d, h in SHAPES])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("layers,bias", [(1, True), (2, True), (1, False)], ids=["1layer", "2layers", "nobias"])
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
def test_kernel_equals_the_equations_in_float64(cell, b, t, d, h, bidirectional, layers, bias):
    torch.manual_seed(b * 1000 + t * 100 + h)
    rnn = cell(d, h, num_layers=layers, bias=bias, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(b, t, d)
    lengths = torch.randint(1, t + 1, (b,))
    lengths[0] = t
    if b > 2:
        lengths[-1] = 0  # an empty sequence: all zeros
    with torch.no_grad():
        assert rnn_kernel.usable(rnn, x)
        got = rnn_kernel.run(rnn, x, lengths)[0]
    want = rnn_reference(rnn, x, lengths)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=1e-5)


def _states(cell, slots: int, b: int, h: int):
    return (torch.randn(slots, b, h), torch.randn(slots, b, h)) if cell is nn.LSTM else torch.randn(slots, b, h)


def _flat(hx) -> tuple:
    return hx if isinstance(hx, tuple) else (hx,)


@needs_kernel
@pytest.mark.parametrize("b,t,d,h", SHAPES[1:4], ids=[f"B{b}-T{t}-D{d}-H{h}" for b, t, d, h in SHAPES[1:4]])
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2)], ids=["uni-1layer", "bi-2layers"])
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
def test_initial_and_final_states_equal_the_equations_in_float64(cell, b, t, d, h, bidirectional, layers):
    """From given ``h0`` (``c0``) the outputs and each direction's state after a sequence's
    last step are the equations' (an empty sequence keeps its initial state)."""
    torch.manual_seed(b * 100 + h)
    rnn = cell(d, h, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(b, t, d)
    lengths = torch.randint(1, t + 1, (b,))
    lengths[-1] = 0 if b > 2 else lengths[-1]
    hx = _states(cell, layers * (2 if bidirectional else 1), b, h)
    with torch.no_grad():
        assert rnn_kernel.usable(rnn, x, hx)
        got, got_hx = rnn_kernel.run(rnn, x, lengths, hx)
    want, h_n, c_n = rnn_reference(rnn, x, lengths, hx, finals=True)
    torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=1e-5)
    for g, w in zip(_flat(got_hx), (h_n, c_n)):
        assert g.dtype == torch.float32 and g.shape == w.shape
        torch.testing.assert_close(g.double(), w, atol=2e-6, rtol=1e-5)
    if b > 2:  # the empty sequence's final states are its initial ones
        for g, w in zip(_flat(got_hx), _flat(hx)):
            assert torch.equal(g[:, -1], w[:, -1])


@needs_kernel
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_run_recurrence_with_states_takes_the_kernel_as_torchs_module(monkeypatch, cell, autocast):
    """``run_recurrence(rnn, x, hx)`` (a decoder's step) runs the kernel in inference (counted)
    and returns what the module returns: the outputs and ``h_n`` (``(h_n, c_n)``)."""
    from attnkit.nn.rnn import run_recurrence

    torch.manual_seed(9)
    rnn = cell(6, 10, num_layers=2, batch_first=True)
    x, hx = torch.randn(5, 1, 6), _states(cell, 2, 5, 10)
    calls = []
    real = rnn_kernel.run
    monkeypatch.setattr(rnn_kernel, "run", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        fused, fused_hx = run_recurrence(rnn, x.bfloat16() if autocast else x, hx)
        with rnn_kernel.off():
            plain, plain_hx = run_recurrence(rnn, x.bfloat16() if autocast else x, hx)
    assert calls == [1]
    torch.testing.assert_close(fused, plain, atol=2e-6, rtol=1e-5)
    for f, p in zip(_flat(fused_hx), _flat(plain_hx)):
        assert f.dtype == p.dtype == torch.float32
        torch.testing.assert_close(f, p, atol=2e-6, rtol=1e-5)


@needs_kernel
def test_states_the_module_would_reject_or_differentiate_keep_torchs_path():
    """``hx`` of the wrong shape, count or device type leaves the call to the module (which
    raises its own error); states that need gradients too."""
    from attnkit.nn.rnn import run_recurrence

    lstm, gru = nn.LSTM(4, 6, batch_first=True), nn.GRU(4, 6, batch_first=True)
    x = torch.randn(2, 3, 4)
    h, c = torch.zeros(1, 2, 6), torch.zeros(1, 2, 6)
    with torch.no_grad():
        assert rnn_kernel.usable(lstm, x, (h, c)) and rnn_kernel.usable(gru, x, h) and rnn_kernel.usable(gru, x, None)
        for rnn, bad in [(lstm, h), (lstm, (h, c, c)), (gru, (h, c)), (lstm, (torch.zeros(1, 3, 6), c)),
                         (gru, torch.zeros(2, 2, 6)), (gru, h.double()), (gru, h.long()), (gru, [h]),
                         (gru, (h,)), (gru, h.bfloat16()), (lstm, (h.bfloat16(), c))]:  # x is float32
            assert not rnn_kernel.usable(rnn, x, bad), bad
        with pytest.raises(RuntimeError, match="Expected hidden"):  # PyTorch's own message
            run_recurrence(gru, x, torch.zeros(1, 3, 6))
    frozen = nn.GRU(4, 6, batch_first=True).requires_grad_(False)
    assert rnn_kernel.usable(frozen, x, h) and not rnn_kernel.usable(frozen, x, h.clone().requires_grad_())


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoder_steps_in_inference_take_the_kernel_with_the_same_output(monkeypatch, cell):
    """An RNN decoder's step (translation, beam search) runs its recurrence on the kernel in
    inference, with the output and new state of PyTorch's RNN."""
    from attnkit.nn.decoders import GRUDecoder, LSTMDecoder

    torch.manual_seed(11)
    dec = (LSTMDecoder if cell == "lstm" else GRUDecoder)(8, 12, hidden=16, layers=2).eval()
    memory, src_lengths = torch.randn(3, 7, 12), torch.tensor([7, 4, 1])
    y = torch.randn(3, 1, 8)
    calls = []
    real = rnn_kernel.run
    monkeypatch.setattr(rnn_kernel, "run", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        state = dec.start(memory, src_lengths)
        out, _, new = dec.step(y, state)
        out2, _, _ = dec.step(y, new)
        with rnn_kernel.off():
            plain, _, plain_new = dec.step(y, state)
            plain2, _, _ = dec.step(y, plain_new)
    assert calls == [1, 1]
    torch.testing.assert_close(out, plain, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out2, plain2, atol=2e-6, rtol=1e-5)
    for key in ("h", "c") if cell == "lstm" else ("h",):
        torch.testing.assert_close(new[key], plain_new[key], atol=2e-6, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("cls", [LSTMEncoder, GRUEncoder])
def test_encoder_in_inference_takes_the_kernel_with_the_same_output_as_torchs_rnn(monkeypatch, cls):
    """The encoder under ``no_grad`` runs the kernel (counted) and gives what PyTorch's packed
    LSTM/GRU gives (``rnn_kernel.off()``), dropout off in eval."""
    torch.manual_seed(3)
    enc = cls(12, hidden=20, layers=2, dropout=0.3).eval()
    x, lengths = torch.randn(5, 9, 12), torch.tensor([9, 3, 1, 0, 6])
    calls = []
    real = rnn_kernel.run
    monkeypatch.setattr(rnn_kernel, "run", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        fused = enc(x, lengths)
        with rnn_kernel.off():
            plain = enc(x, lengths)
    assert calls == [1]
    torch.testing.assert_close(fused, plain, atol=2e-6, rtol=1e-5)
    assert (fused[3] == 0).all() and (fused[1, 3:] == 0).all()


@needs_kernel
def test_the_kernel_runs_only_where_it_should():
    rnn = nn.LSTM(4, 6, batch_first=True, bidirectional=True)
    x = torch.randn(2, 3, 4)
    assert not rnn_kernel.usable(rnn, x)  # gradients wanted (the parameters require them)
    with torch.no_grad():
        assert rnn_kernel.usable(rnn, x)
        assert rnn_kernel.usable(rnn, x.bfloat16())  # widened: the recurrence runs in fp32 anyway
        assert rnn_kernel.usable(rnn, torch.randn(rnn_kernel.MAX_BATCH, 3, 4))
        assert not rnn_kernel.usable(rnn, torch.randn(rnn_kernel.MAX_BATCH + 1, 3, 4))  # left to oneDNN
        assert not rnn_kernel.usable(rnn, x.double())
        assert not rnn_kernel.usable(copy.deepcopy(rnn).double(), x.double())
        assert not rnn_kernel.usable(nn.LSTM(4, 6, batch_first=False), x)
        assert not rnn_kernel.usable(nn.LSTM(4, 6, batch_first=True, proj_size=3), x)
        assert rnn_kernel.usable(nn.GRU(4, 6, batch_first=True), x)
        assert not rnn_kernel.usable(nn.RNN(4, 6, batch_first=True), x)  # the plain tanh RNN: not in the kernel
        assert not rnn_kernel.usable(rnn, torch.randn(0, 3, 4))
        assert rnn_kernel.usable(nn.LSTM(1, 2, batch_first=True), torch.randn(1, 1, 1))  # one number is enough
        assert not rnn_kernel.usable(nn.LSTM(4, 6, batch_first=True).double(), x)  # weights not float32
        assert not rnn_kernel.usable(nn.LSTM(4, 6, batch_first=True).bfloat16(), x.bfloat16())
        with rnn_kernel.off():
            assert not rnn_kernel.usable(rnn, x)
        deep = nn.LSTM(4, 6, num_layers=2, dropout=0.5, batch_first=True)
        assert not rnn_kernel.usable(deep.train(), x)  # dropout between layers in training
        assert rnn_kernel.usable(deep.eval(), x)
        single = nn.LSTM(4, 6, batch_first=True).train()
        single.dropout = 0.5  # one layer: nothing between layers, PyTorch ignores it too
        assert rnn_kernel.usable(single, x)
    frozen = nn.LSTM(4, 6, batch_first=True).requires_grad_(False)
    assert rnn_kernel.usable(frozen, x) and not rnn_kernel.usable(frozen, x.requires_grad_())


@needs_kernel
def test_an_exported_graph_keeps_torchs_lstm(monkeypatch):
    """While tracing (ONNX export, ``torch.jit.trace``) the kernel stays out: it would be an
    opaque call baked into the graph."""
    rnn = nn.LSTM(4, 6, batch_first=True).eval()
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    with torch.no_grad():
        assert not rnn_kernel.usable(rnn, torch.randn(1, 3, 4))


@needs_kernel
def test_packed_weights_follow_the_modules_weights():
    """An in-place update (an optimizer step) or ``load_state_dict`` is seen on the next call,
    and unchanged weights are packed once; weights made under inference mode work (packed per call)."""
    torch.manual_seed(5)
    rnn = nn.LSTM(5, 7, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(2, 4, 5), torch.tensor([4, 2])
    with torch.no_grad():
        first = rnn_kernel.run(rnn, x, lengths)[0]
        assert rnn_kernel.packed(rnn) is rnn_kernel.packed(rnn)
        rnn.weight_hh_l0_reverse.mul_(-1.5)
        torch.testing.assert_close(rnn_kernel.run(rnn, x, lengths)[0].double(), rnn_reference(rnn, x, lengths),
                                   atol=2e-6, rtol=1e-5)
        other = nn.LSTM(5, 7, batch_first=True, bidirectional=True)
        rnn.load_state_dict(other.state_dict())
        torch.testing.assert_close(rnn_kernel.run(rnn, x, lengths)[0].double(), rnn_reference(other, x, lengths),
                                   atol=2e-6, rtol=1e-5)
        assert not torch.allclose(first, rnn_kernel.run(rnn, x, lengths)[0])
    with torch.inference_mode():
        made = nn.LSTM(5, 7, batch_first=True)
        torch.testing.assert_close(rnn_kernel.run(made, x, lengths)[0].double(), rnn_reference(made, x, lengths),
                                   atol=2e-6, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("cls", [LSTMEncoder, GRUEncoder])
def test_bf16_inputs_under_autocast_give_the_fp32_recurrence(cls):
    torch.manual_seed(8)
    enc = cls(6, hidden=5).eval()
    x, lengths = torch.randn(3, 7, 6).bfloat16(), torch.tensor([7, 4, 1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused = enc(x, lengths)
        with rnn_kernel.off():
            plain = enc(x, lengths)
    assert fused.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(fused, plain, atol=2e-6, rtol=1e-5)


def test_the_kernel_builds_where_a_compiler_is_installed():
    module = build_where_a_compiler_is(rnn_kernel._build, "ATTNKIT_RNN_KERNEL", "PyTorch's LSTM/GRU runs")
    assert hasattr(module, "rnn_recurrence")


def test_switched_off_it_says_so_and_torchs_rnn_runs(monkeypatch, caplog):
    monkeypatch.setenv("ATTNKIT_RNN_KERNEL", "0")
    monkeypatch.setattr(rnn_kernel, "_built", {})
    with caplog.at_level("WARNING", logger="attnkit"):
        assert rnn_kernel.kernel() is None
        enc = LSTMEncoder(3, hidden=4).eval()
        with torch.no_grad():
            assert not rnn_kernel.usable(enc.rnn, torch.randn(1, 2, 3))
            out = enc(torch.randn(1, 2, 3), torch.tensor([2]))
    assert out.shape == (1, 2, 8)
    assert rnn_kernel.why_not() == "ATTNKIT_RNN_KERNEL=0"
    assert [r.getMessage() for r in caplog.records] == [
        "fused LSTM/GRU kernel not used (ATTNKIT_RNN_KERNEL=0): PyTorch's LSTM/GRU runs"]


@needs_kernel
@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "torch"])
def test_lengths_past_the_padded_length_are_one_clear_error_on_either_path(grad):
    from attnkit.errors import ShapeError

    enc = LSTMEncoder(3, hidden=4).eval()
    with torch.set_grad_enabled(grad), pytest.raises(ShapeError, match=r"^lengths: values must be <= the padded "
                                                                         r"length 5, got \[5, 6\]$"):
        enc(torch.randn(2, 5, 3), torch.tensor([5, 6]))


@needs_kernel
def test_hooks_on_the_rnn_keep_torchs_path():
    """The kernel never calls ``rnn.forward``: a module with forward hooks (pruning, weight
    norm, a user's) runs PyTorch's RNN, and its hook is seen."""
    enc = LSTMEncoder(3, hidden=4).eval()
    x = torch.randn(1, 5, 3)
    seen = []
    handle = enc.rnn.register_forward_pre_hook(lambda m, args: seen.append(1))
    with torch.no_grad():
        assert not rnn_kernel.usable(enc.rnn, x)
        enc(x, torch.tensor([5]))
    assert seen == [1]
    handle.remove()
    with torch.no_grad():
        assert rnn_kernel.usable(enc.rnn, x)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: None)
    try:
        with torch.no_grad():
            assert not rnn_kernel.usable(enc.rnn, x)
    finally:
        handle.remove()


@needs_kernel
def test_batches_up_to_max_batch_and_strided_inputs():
    torch.manual_seed(2)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True)
    x = torch.randn(7, rnn_kernel.MAX_BATCH, 6).transpose(0, 1)  # not contiguous
    lengths = torch.randint(1, 8, (rnn_kernel.MAX_BATCH,))
    with torch.no_grad():
        assert rnn_kernel.usable(rnn, x)
        got = rnn_kernel.run(rnn, x, lengths)[0]
    torch.testing.assert_close(got.double(), rnn_reference(rnn, x, lengths), atol=2e-6, rtol=1e-5)


@needs_kernel
def test_a_replaced_parameter_or_forget_after_a_data_edit_repacks():
    torch.manual_seed(6)
    rnn = nn.LSTM(4, 3, batch_first=True)
    x, lengths = torch.randn(1, 5, 4), torch.tensor([5])

    def check():
        torch.testing.assert_close(rnn_kernel.run(rnn, x, lengths)[0].double(), rnn_reference(rnn, x, lengths),
                                   atol=2e-6, rtol=1e-5)

    with torch.no_grad():
        check()
        rnn.weight_hh_l0 = nn.Parameter(torch.randn(12, 3))  # a new tensor, at version 0 as well
        check()
        rnn.weight_ih_l0.data.mul_(2)  # bypasses the version counter: not seen until forget()
        rnn_kernel.forget(rnn)
        check()
        rnn_kernel.forget(rnn)
        rnn_kernel.forget(rnn)  # nothing packed: nothing to drop, no error
        check()
    rnn.bfloat16().float()  # .to() swaps .data (versions unchanged, values rounded): seen by its storage
    with torch.no_grad():
        check()


@needs_kernel
def test_lengths_of_any_integer_type():
    torch.manual_seed(4)
    rnn = nn.GRU(3, 5, batch_first=True)
    x = torch.randn(2, 4, 3)
    with torch.no_grad():
        for lengths in (torch.tensor([4, 2], dtype=torch.int32), torch.tensor([4, 2], dtype=torch.int16)):
            torch.testing.assert_close(rnn_kernel.run(rnn, x, lengths)[0].double(), rnn_reference(rnn, x, lengths),
                                       atol=2e-6, rtol=1e-5)


def test_a_first_build_says_what_it_builds(monkeypatch, tmp_path, caplog):
    import logging
    import types

    import torch.utils.cpp_extension as ext

    monkeypatch.setattr(ext, "get_default_build_root", lambda: str(tmp_path))
    monkeypatch.setattr(ext, "load_inline", lambda *a, **kw: types.SimpleNamespace())
    monkeypatch.delenv("ATTNKIT_RNN_KERNEL", raising=False)
    with caplog.at_level(logging.INFO, logger="attnkit"):
        assert rnn_kernel._build()[0] is not None
    assert any(r.getMessage().startswith("building the fused LSTM/GRU kernel for ") for r in caplog.records)


@needs_kernel
def test_the_compiled_call_checks_its_inputs():
    k = rnn_kernel.kernel()
    xp, w, bh, n = torch.zeros(1, 2, 8), torch.zeros(1, 2, 8), torch.zeros(1, 8), torch.tensor([2])
    e = torch.zeros(0)
    out, h_n, c_n = k.rnn_recurrence(xp, w, bh, n, 0, e, e)
    assert out.shape == (1, 2, 2) and h_n.shape == c_n.shape == (1, 1, 2)
    for bad, match in [((xp, w, bh, torch.tensor([2, 2]), 0), "shapes"),
                       ((xp, w, bh, n.int(), 0), "int64"),
                       ((xp.double(), w, bh, n, 0), "float32"),
                       ((xp, w, bh, n, 1), "gates"),
                       ((xp, w, bh, n, 2), "cell"),
                       ((torch.zeros(1, 8, 2).transpose(1, 2), w, bh, n, 0), "contiguous")]:
        with pytest.raises(RuntimeError, match=match):
            k.rnn_recurrence(*bad, e, e)
    for h0, c0, match in [(torch.zeros(1, 2, 2), e, "h0, c0"),  # batch 2, not 1
                          (e, torch.zeros(1, 1, 2).double(), "h0, c0"),
                          (torch.zeros(2, 1, 1), e, "h0, c0")]:
        with pytest.raises(RuntimeError, match=match):
            k.rnn_recurrence(xp, w, bh, n, 0, h0, c0)
    gru_w, gru_xp, gru_bh = torch.zeros(1, 2, 6), torch.zeros(1, 2, 6), torch.zeros(1, 6)
    with pytest.raises(RuntimeError, match="no cell state"):
        k.rnn_recurrence(gru_xp, gru_w, gru_bh, n, 1, e, torch.zeros(1, 1, 2))


@needs_kernel
def test_the_python_lock_is_released_during_the_recurrence():
    """Another Python thread (a server's) runs while the kernel works: it counts at a rate
    near the one it reaches while this thread sleeps (with the lock held it would get about
    1-2% of it: measured with a C loop that holds the lock)."""
    import threading
    import time

    rnn = nn.GRU(8, 64, batch_first=True)
    x, lengths = torch.randn(1, 40_000, 8), torch.tensor([40_000])
    w_ih, b, w_hh, b_h = rnn_kernel.packed(rnn)[0]
    with torch.no_grad():
        xp = torch.addmm(b, x[0], w_ih).unsqueeze(0)
    started, done, ticks = threading.Event(), threading.Event(), []

    def count():
        started.set()
        while not done.is_set():
            ticks.append(1)

    def rate(work):
        before, t0 = len(ticks), time.perf_counter()
        work()
        return (len(ticks) - before) / (time.perf_counter() - t0)

    worker = threading.Thread(target=count)
    worker.start()
    started.wait()
    try:
        asleep = rate(lambda: time.sleep(0.2))
        e = torch.zeros(0)
        working = rate(lambda: rnn_kernel.kernel().rnn_recurrence(xp, w_hh, b_h, lengths, 1, e, e))
    finally:
        done.set()
        worker.join()
    assert working > 0.2 * asleep, (working, asleep)
