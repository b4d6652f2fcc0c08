"""The CRF against brute-force enumeration of every tag sequence (float64)."""
import itertools

import pytest
import torch

from attnkit.nn import CRF


def brute(crf, em, length):
    """log Z and the best sequence of one row by enumerating all K^length sequences."""
    k = crf.num_tags
    scores = {}
    for seq in itertools.product(range(k), repeat=length):
        s = crf.start[seq[0]] + em[0, seq[0]]
        for t in range(1, length):
            s = s + crf.trans[seq[t - 1], seq[t]] + em[t, seq[t]]
        scores[seq] = s + crf.end[seq[-1]]
    stacked = torch.stack(list(scores.values()))
    return torch.logsumexp(stacked, 0), max(scores, key=lambda q: scores[q].item()), scores


@pytest.mark.parametrize("lengths,k", [([4, 2, 1], 3), ([5, 5], 2), ([3], 4), ([1, 1], 3)])
def test_crf_matches_enumeration(lengths, k):
    torch.manual_seed(len(lengths) + k)
    t = max(lengths)
    crf = CRF(k).double()
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    em = torch.randn(len(lengths), t, k, dtype=torch.float64)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    tags = torch.randint(0, k, (len(lengths), t)).masked_fill(~mask, -100)
    log_z = crf.log_partition(em, mask)
    seq_score = crf.sequence_score(em, tags, mask)
    best = crf.decode(em, mask)
    assert best.dtype == torch.long  # tag ids (index tensors downstream), -100 at padding
    for i, n in enumerate(lengths):
        z, arg, scores = brute(crf, em[i], n)
        assert torch.allclose(log_z[i], z)
        assert torch.allclose(seq_score[i], scores[tuple(tags[i, :n].tolist())])
        assert tuple(best[i, :n].tolist()) == arg
        assert (best[i, n:] == -100).all()


def test_crf_nll_gradcheck():
    torch.manual_seed(0)
    crf = CRF(3).double()
    em = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, -100, -100]])
    params = [torch.randn(3, 3, dtype=torch.float64, requires_grad=True) for _ in range(1)] + [
        torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(2)]

    def f(em, trans, start, end):
        return torch.func.functional_call(crf, {"trans": trans, "start": start, "end": end}, (em, tags, mask))
    assert torch.autograd.gradcheck(f, (em, *params))


def test_crf_rejects_bad_shapes():
    crf = CRF(3)
    with pytest.raises(ValueError, match="emissions: expected"):
        crf.nll(torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))


def test_crf_nll_is_the_mean_negative_log_probability_of_the_tags():
    """``nll = mean_b (log Z_b - score_b)`` against enumeration, single-token rows included
    (their score is ``start + emission + end`` of the one tag, whatever the padding holds)."""
    torch.manual_seed(5)
    crf = CRF(3).double()
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    lengths = [3, 1, 1]
    em = torch.randn(3, 3, 3, dtype=torch.float64)
    mask = torch.arange(3)[None] < torch.tensor(lengths)[:, None]
    tags = torch.tensor([[2, 0, 1], [1, -100, -100], [2, 0, 0]])
    want = 0.0
    for i, n in enumerate(lengths):
        z, _, scores = brute(crf, em[i], n)
        want += (z - scores[tuple(tags[i, :n].tolist())]).item() / len(lengths)
    assert crf.nll(em, tags, mask).item() == pytest.approx(want, rel=1e-10)
    one = crf.sequence_score(em[1:2, :1], tags[1:2, :1], mask[1:2, :1])
    assert one.item() == pytest.approx((crf.start[1] + em[1, 0, 1] + crf.end[1]).item(), rel=1e-12)


def test_crf_on_the_test_device_matches_the_cpu(device):
    """NLL and Viterbi paths computed on the device equal the CPU's."""
    torch.manual_seed(6)
    crf = CRF(3).double()
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    em = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, -100, -100]])
    want_nll, want_path = crf.nll(em, tags, mask), crf.decode(em, mask)
    dev = crf.to(device)
    got_nll = dev.nll(em.to(device), tags.to(device), mask.to(device))
    assert got_nll.item() == pytest.approx(want_nll.item(), rel=1e-10)
    assert dev.decode(em.to(device), mask.to(device)).tolist() == want_path.tolist()
