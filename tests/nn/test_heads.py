"""Output heads against their formulas (float64): logits, cross-entropy with class weights and
label smoothing, arg-max predictions, and the CRF head against brute-force enumeration."""
import itertools
import math

import pytest
import torch

from attnkit.nn import ClassificationHead, TokenClassificationHead

DT = torch.float64


def linears(module):
    """``[(weight, bias)]`` of the module's linear maps, in order of definition."""
    return [(m.weight, m.bias) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def ce_reference(logits, labels, weights=None, smoothing=0.0):
    """Mean cross-entropy from the definition: ``l_n = -sum_c w_c q_{n,c} log p_{n,c}`` with
    ``q = (1 - eps) onehot(y_n) + eps / C``, divided by ``sum_n w_{y_n}``; label -100 ignored."""
    num = den = 0.0
    c = logits.shape[-1]
    w = [1.0] * c if weights is None else [float(v) for v in weights]
    for row, y in zip(logits.reshape(-1, c).tolist(), labels.reshape(-1).tolist()):
        if y == -100:
            continue
        log_z = math.log(sum(math.exp(v) for v in row))
        for k in range(c):
            q = (1 - smoothing) * (k == y) + smoothing / c
            num += -w[k] * q * (row[k] - log_z)
        den += w[y]
    return num / den


def test_classification_head_default_is_one_linear_layer_without_dropout():
    """Defaults: no hidden layer, no dropout (logits are ``x W^T + b`` even in train mode) and
    a plain cross-entropy loss (no smoothing, no weights)."""
    head = ClassificationHead(5, 3).to(DT).train()
    (w, b), = linears(head)
    assert w.shape == (3, 5)
    x = torch.randn(6, 5, dtype=DT)
    logits = head(x)
    torch.testing.assert_close(logits, x @ w.T + b)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    assert head.loss(logits, y).item() == pytest.approx(ce_reference(logits, y), rel=1e-12)


def test_classification_head_hidden_layer():
    """With ``hidden``: ``W2 relu(W1 x + b1) + b2``."""
    head = ClassificationHead(5, 3, hidden=4).to(DT).eval()
    (w1, b1), (w2, b2) = linears(head)
    assert w1.shape == (4, 5) and w2.shape == (3, 4)
    x = torch.randn(7, 5, dtype=DT)
    torch.testing.assert_close(head(x), torch.relu(x @ w1.T + b1) @ w2.T + b2)


def test_classification_head_dropout_applies_to_its_input_features():
    """In train mode dropout zeroes single input features (their gradient is exactly zero while
    other features of the same row still get one); in eval mode nothing is dropped."""
    torch.manual_seed(0)
    head = ClassificationHead(32, 3, hidden=16, dropout=0.5).to(DT).train()
    x = torch.randn(8, 32, dtype=DT, requires_grad=True)
    head(x).sum().backward()
    zero = x.grad == 0
    assert 0.25 < zero.double().mean().item() < 0.75
    assert (zero.any(1) & ~zero.all(1)).any()  # dropped features inside a live row
    head.eval()
    x.grad = None
    head(x).sum().backward()
    assert (x.grad != 0).all()


def test_classification_loss_with_class_weights_and_smoothing():
    """``class_weights`` (plain ints work too) weight each example's loss and the mean, alone
    and together with label smoothing, as in the definition."""
    torch.manual_seed(1)
    logits = torch.randn(6, 3, dtype=DT)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    for smoothing in (0.0, 0.2):
        head = ClassificationHead(4, 3, class_weights=[1, 3, 2], label_smoothing=smoothing).to(DT)
        want = ce_reference(logits, y, weights=[1, 3, 2], smoothing=smoothing)
        assert head.loss(logits, y).item() == pytest.approx(want, rel=1e-12)


def test_classification_predict_is_the_arg_max_over_classes():
    """The arg-max over the last (class) axis, for ``[B, C]`` logits and any leading shape."""
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0], [0.0, 0.5, 0.7], [-2.0, -1.0, -3.0]])
    want = [max(range(3), key=row.__getitem__) for row in logits.tolist()]
    head = ClassificationHead(2, 3)
    assert head.predict(logits).tolist() == want
    torch.manual_seed(8)
    deep = torch.randn(2, 3, 4)
    want = [[max(range(4), key=v.__getitem__) for v in row] for row in deep.tolist()]
    assert head.predict(deep).tolist() == want


# ------------------------------------------------------------------ token classification


def test_token_head_default_has_no_dropout():
    """Default ``dropout=0``: emissions are ``h W^T + b`` in train mode too."""
    head = TokenClassificationHead(5, 4).to(DT).train()
    (w, b), = linears(head)
    h = torch.randn(2, 3, 5, dtype=DT)
    torch.testing.assert_close(head(h), h @ w.T + b)


def test_token_head_loss_weights_smoothing_and_padding():
    """Per-token cross-entropy with class weights and label smoothing; -100 labels ignored."""
    torch.manual_seed(2)
    head = TokenClassificationHead(5, 4, class_weights=[1, 2, 3, 1], label_smoothing=0.1).to(DT)
    logits = torch.randn(2, 4, 4, dtype=DT)
    labels = torch.tensor([[1, 2, 3, -100], [0, 3, -100, -100]])
    want = ce_reference(logits, labels, weights=[1, 2, 3, 1], smoothing=0.1)
    assert head.loss(logits, labels).item() == pytest.approx(want, rel=1e-12)


def test_token_head_predict_without_crf():
    """Arg-max per token ``[B, T]``; with a mask, -100 at padding."""
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 4)
    want = [[max(range(4), key=tok.__getitem__) for tok in row] for row in logits.tolist()]
    head = TokenClassificationHead(5, 4)
    assert head.predict(logits).tolist() == want
    mask = torch.tensor([[True, True, False], [True, False, False]])
    want_masked = [[want[i][t] if mask[i, t] else -100 for t in range(3)] for i in range(2)]
    assert head.predict(logits, mask).tolist() == want_masked


def crf_head(k=3, seed=4):
    torch.manual_seed(seed)
    head = TokenClassificationHead(5, k, crf=True).to(DT)
    with torch.no_grad():
        for p in head.crf.parameters():
            p.normal_()
    return head


def crf_scores(head, em, n):
    """Score of every tag sequence of length ``n`` for one row, by enumeration."""
    crf, k = head.crf, em.shape[-1]
    out = {}
    for seq in itertools.product(range(k), repeat=n):
        s = crf.start[seq[0]] + em[0, seq[0]] + crf.end[seq[-1]]
        for t in range(1, n):
            s = s + crf.trans[seq[t - 1], seq[t]] + em[t, seq[t]]
        out[seq] = s.item()
    return out


def crf_nll_reference(head, em, tags, lengths):
    total = 0.0
    for i, n in enumerate(lengths):
        scores = crf_scores(head, em[i], n)
        log_z = math.log(sum(math.exp(s) for s in scores.values()))
        total += log_z - scores[tuple(tags[i, :n].tolist())]
    return total / len(lengths)


def test_crf_head_loss_is_the_crf_negative_log_likelihood():
    """``crf: true``: the loss is the CRF's mean NLL (not token cross-entropy). Without a mask
    the real tokens are those labelled != -100; a given mask decides on its own."""
    head = crf_head()
    em = torch.randn(3, 4, 3, dtype=DT)
    tags = torch.tensor([[0, 2, 1, 1], [2, 1, -100, -100], [1, -100, -100, -100]])
    want = crf_nll_reference(head, em, tags, [4, 2, 1])
    assert head.loss(em, tags).item() == pytest.approx(want, rel=1e-10)
    mask = tags != -100
    assert head.loss(em, tags, mask).item() == pytest.approx(want, rel=1e-10)
    full = torch.tensor([[0, 2, 1, 1], [2, 1, 0, 2], [1, 2, 2, 0]])  # labelled everywhere...
    assert head.loss(em, full, mask).item() == pytest.approx(want, rel=1e-10)  # ...mask rules


def test_crf_head_predict_is_viterbi_over_each_real_length():
    """Without a mask every position is real; with one, the best sequence of each row's real
    length and -100 after it."""
    head = crf_head(seed=5)
    em = torch.randn(3, 4, 3, dtype=DT)
    lengths = [4, 2, 1]

    def best(i, n):
        scores = crf_scores(head, em[i], n)
        return list(max(scores, key=scores.get))

    assert head.predict(em).tolist() == [best(i, 4) for i in range(3)]
    mask = torch.arange(4)[None] < torch.tensor(lengths)[:, None]
    assert head.predict(em, mask).tolist() == [best(i, n) + [-100] * (4 - n) for i, n in enumerate(lengths)]


def test_crf_head_predict_without_mask_on_the_test_device(device):
    """Without a mask the all-real mask is made on the emissions' device."""
    head = crf_head(seed=6)
    em = torch.randn(2, 3, 3, dtype=DT)
    want = head.predict(em).tolist()
    assert head.to(device).predict(em.to(device)).tolist() == want
