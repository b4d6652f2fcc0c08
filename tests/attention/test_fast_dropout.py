"""attnkit's CPU dropout (attnkit.attention.dropout) against the definition: each element kept
independently with probability 1 - p and scaled by 1 / P(keep), the gradient the same mask."""
import math

import pytest
import torch

from attnkit.attention.dropout import LEVELS, Dropout, dropout, keep_mask


def effective(p: float) -> float:
    return round(p * LEVELS) / LEVELS


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.0317])
def test_kept_fraction_and_scale_match_the_definition(p):
    torch.manual_seed(0)
    n = 1 << 20
    x = torch.rand(n, dtype=torch.float64) + 0.5
    y = dropout(x, p)
    kept = y != 0
    q = 1 - effective(p)
    sigma = math.sqrt(q * (1 - q) / n)
    assert abs(kept.double().mean().item() - q) < 5 * sigma
    for part in range(4):  # every 16-bit part of a 64-bit draw is as good as the others
        assert abs(kept.view(-1, 4)[:, part].double().mean().item() - q) < 5 * sigma * 2
    torch.testing.assert_close(y[kept], x[kept] / q, rtol=1e-12, atol=0)  # kept: scaled by 1 / P(keep)
    # neighbours are independent: P(both kept) = q^2
    both = (kept[:-1] & kept[1:]).double().mean().item()
    assert abs(both - q * q) < 6 * math.sqrt(q * q * (1 - q * q) / n)


def test_the_expectation_is_the_input():
    torch.manual_seed(1)
    x = torch.full((2000, 512), 3.0)
    assert abs(dropout(x, 0.3).mean().item() - 3.0) < 0.02


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 5, 7), (32, 10, 384)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_gradient_is_the_same_mask_and_the_dtype_is_kept(shape, dtype):
    torch.manual_seed(2)
    x = torch.randn(shape, dtype=dtype).abs().add_(0.1).requires_grad_()  # nonzero: kept <=> output nonzero
    y = dropout(x, 0.25)
    assert y.dtype == dtype and y.shape == x.shape
    g = torch.randn(shape, dtype=dtype)
    y.backward(g)
    scale = 1 / (1 - effective(0.25))
    expected = torch.where(y != 0, g.double() * scale, torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(x.grad.double(), expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=0)


def test_gradcheck():
    torch.manual_seed(3)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)

    def fixed_mask(t):  # the same draw each call, so finite differences see one function
        torch.manual_seed(4)
        return dropout(t, 0.4)
    assert torch.autograd.gradcheck(fixed_mask, (x,))


def test_seeded_draws_repeat_and_successive_draws_differ():
    x = torch.ones(1000)
    torch.manual_seed(5)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.5), a) and not torch.equal(a, b)


def test_off_cases_and_the_module():
    x = torch.randn(5, 4)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))  # F.dropout's answer for p = 1
    ones = torch.ones(100_000)
    assert (dropout(ones, 1 - 2 ** -17) == 0).sum() > 99_000  # 15 bits would round it to 1: F.dropout's
    assert (dropout(ones, 2 ** -17) == 0).sum() < 10  # ... and to 0: still dropout, F.dropout's
    assert torch.equal(dropout(torch.arange(4), 0.5, training=False), torch.arange(4))
    m = Dropout(0.5)
    assert isinstance(m, torch.nn.Dropout) and m.state_dict() == {}
    m.eval()
    assert m(x) is x
    m.train()
    y = m(torch.ones(10_000))
    assert set(y.unique().tolist()) <= {0.0, 1 / (1 - effective(0.5))} and 0.4 < (y == 0).float().mean() < 0.6
    inplace = torch.ones(100)
    Dropout(0.5, inplace=True)(inplace)
    assert (inplace == 0).any()  # in place: the module's own tensor changed, as F.dropout does


def test_keep_mask_rounds_the_probability():
    keep, scale = keep_mask(torch.Size([4, 4]), 0.1)
    assert keep.dtype == torch.uint8 and keep.shape == (4, 4) and set(keep.unique().tolist()) <= {0, 1}
    assert scale == LEVELS / (LEVELS - round(0.1 * LEVELS))


def test_the_models_blocks_use_it(dropout_draws):
    from attnkit.nn.embedding import TokenEmbedding
    from attnkit.nn.heads import ClassificationHead

    torch.manual_seed(6)
    TokenEmbedding(50, 8, dropout=0.3).train()(torch.randint(1, 50, (2, 5)))
    ClassificationHead(8, 2, dropout=0.2).train()(torch.randn(3, 8))
    assert dropout_draws == [0.3, 0.2]


def test_the_mask_is_drawn_on_the_cpu_whatever_the_default_device():
    from attnkit.attention.dropout import keep_mask

    with torch.device("meta"):  # a default device elsewhere (as torch.set_default_device("cuda") would make)
        keep, scale = keep_mask(torch.Size([3, 5]), 0.5)
    assert keep.device.type == "cpu" and keep.shape == (3, 5) and scale == 2.0
