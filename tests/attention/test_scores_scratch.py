"""The chunked kernel's reusable tile buffers: a buffer made under ``torch.inference_mode``
cannot be written outside it, so a model timed in inference mode and then scored under
``no_grad`` (what a benchmark or a server does) must not reuse it."""
import torch

from attnkit.attention import Attention


def test_inference_mode_then_no_grad_reuses_no_inference_buffer():
    torch.manual_seed(0)
    att = Attention(6, 6, score="additive", hidden=5, backend="chunked").eval()
    q, k = torch.randn(2, 3, 6), torch.randn(2, 11, 6)
    with torch.inference_mode():
        first = att(q, k)[0].clone()
    with torch.no_grad():
        second = att(q, k)[0]
    with torch.inference_mode():
        third = att(q, k)[0].clone()
    torch.testing.assert_close(second, first)
    torch.testing.assert_close(third, first)


def test_scratch_buffers_are_reused_per_slot_and_mode():
    """The point of ``scratch``: the same memory again for the same slot (no fresh pages), a
    larger one only when asked for more, a separate one per slot, dtype and mode."""
    from attnkit.attention.scores import scratch

    like = torch.empty(0)
    with torch.no_grad():
        a = scratch(7, (4, 8), like)
        b = scratch(7, (2, 8), like)
        c = scratch(8, (4, 8), like)
        d = scratch(7, (4, 8), like.double())
    with torch.inference_mode():
        e = scratch(7, (4, 8), like)
    assert a.data_ptr() == b.data_ptr()
    assert len({a.data_ptr(), c.data_ptr(), d.data_ptr(), e.data_ptr()}) == 4
    with torch.no_grad():
        assert scratch(7, (64, 64), like).data_ptr() != a.data_ptr()  # grown
    with torch.enable_grad():
        assert scratch(7, (2, 8), like).data_ptr() != scratch(7, (2, 8), like).data_ptr()  # autograd may keep it
