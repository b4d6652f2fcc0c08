"""Weights held in bf16 under bf16 autocast (attnkit.train.bf16_weights): the same results as
autocast's own casts, bit for bit, and the fp32 weights back untouched afterwards."""
import threading

import torch
from torch import nn

from attnkit.train.bf16_weights import bf16_weights, declared_weights, forget_bf16_copies
from attnkit.train.precision import PrecisionChoice

BF16 = PrecisionChoice("bf16", "test")


class Net(nn.Module):
    """Three Linears; only ``a`` is declared safe, ``b``'s weight is read directly; ``pre``
    comes first, so its gradient flows back through ``a``."""

    def __init__(self):
        super().__init__()
        self.pre, self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 5), nn.Linear(5, 3)
        self.seen = []

    def bf16_safe_weights(self):
        return [self.a.weight, self.a.weight]  # declared twice: held once

    def forward(self, x):
        self.seen.append((self.a.weight.dtype, self.b.weight.dtype))
        return self.b(torch.relu(self.a(torch.tanh(self.pre(x))))) + self.b.weight.sum()


def fresh(seed=0):
    torch.manual_seed(seed)
    return Net()


def test_only_declared_weights_are_held_and_restored():
    net = fresh()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pointer = net.a.weight.data_ptr()
    with bf16_weights(net):
        assert net.a.weight.dtype == torch.bfloat16 and net.b.weight.dtype == torch.float32
        assert torch.equal(net.a.weight.data, before["a.weight"].to(torch.bfloat16))
    assert net.a.weight.data_ptr() == pointer  # the fp32 tensor itself, not a round trip through bf16
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k])
    assert declared_weights(net) == [net.a.weight]


def test_forward_and_gradients_are_bit_identical_to_autocast():
    x = torch.randn(4, 6)
    plain, held = fresh(), fresh()
    for net in (plain, held):
        net.a.weight.requires_grad_(False)
    with BF16.autocast():
        want = plain(x)
    want.sum().backward()
    with BF16.frozen_weights(held):  # a training step: forward and backward inside
        with BF16.autocast():
            got = held(x)
        got.sum().backward()
        assert held.seen[-1] == (torch.bfloat16, torch.float32)
    assert torch.equal(got, want)
    for name in ("pre.weight", "pre.bias", "a.bias", "b.weight", "b.bias"):  # pre's: back through held a
        assert torch.equal(dict(held.named_parameters())[name].grad, dict(plain.named_parameters())[name].grad)


def test_frozen_only_leaves_training_weights_alone_and_follows_changes():
    net = fresh()
    with BF16.frozen_weights(net):
        assert net.a.weight.dtype == torch.float32  # it trains: its cast is autocast's (cached) business
    net.a.weight.requires_grad_(False)
    with BF16.frozen_weights(net):
        assert net.a.weight.dtype == torch.bfloat16


def test_copies_are_remade_when_a_weight_changes():
    net = fresh()
    full = net.a.weight.data
    with bf16_weights(net):
        first = net.a.weight.data
    with torch.no_grad():
        net.a.weight.add_(1.0)  # an optimiser step or a load_state_dict: in place
    with bf16_weights(net):
        assert torch.equal(net.a.weight.data, full.to(torch.bfloat16))
        assert not torch.equal(net.a.weight.data, first)
    net.a.weight.data = torch.zeros(5, 6)  # a new tensor
    with bf16_weights(net):
        assert torch.equal(net.a.weight.data, torch.zeros(5, 6, dtype=torch.bfloat16))
    net.a.weight.data += 1  # through .data: neither storage nor version shows it ...
    with bf16_weights(net):
        assert torch.equal(net.a.weight.data, torch.zeros(5, 6, dtype=torch.bfloat16))  # stale
    forget_bf16_copies(net)  # ... so the writer says so (the LoRA merge does)
    with bf16_weights(net):
        assert torch.equal(net.a.weight.data, torch.ones(5, 6, dtype=torch.bfloat16))
    net.a = nn.Linear(6, 5)  # a replaced module (pruning) is picked up
    with bf16_weights(net):
        assert net.a.weight.dtype == torch.bfloat16


def test_nested_and_concurrent_calls_share_one_swap():
    net = fresh()
    with bf16_weights(net):
        with bf16_weights(net):
            pass
        assert net.a.weight.dtype == torch.bfloat16  # the inner exit did not restore
    assert net.a.weight.dtype == torch.float32
    net = fresh(1)  # no copies yet: the threads race to make them
    net.a.weight.requires_grad_(False)
    full = net.a.weight.detach().clone()
    errors, start = [], threading.Barrier(6)

    def work(training):
        try:
            start.wait()
            for _ in range(50):
                swap = BF16.frozen_weights(net) if training else BF16.autocast(net)
                with swap, torch.autocast("cpu", dtype=torch.bfloat16):
                    net(torch.randn(2, 6))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(6)]  # both modes at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert net.a.weight.dtype == torch.float32 and torch.equal(net.a.weight, full)
    with BF16.frozen_weights(net), BF16.autocast(net):  # the two modes nested
        assert net.a.weight.dtype == torch.bfloat16
    assert net.a.weight.dtype == torch.float32 and torch.equal(net.a.weight, full)


def test_fp32_does_nothing_and_a_model_without_declarations_is_untouched():
    net = fresh()
    with PrecisionChoice("fp32", "test").autocast(net):
        assert net.a.weight.dtype == torch.float32
    seq = nn.Sequential(nn.Linear(3, 3))
    with BF16.autocast(seq):
        assert seq[0].weight.dtype == torch.float32
