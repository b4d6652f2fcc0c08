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
