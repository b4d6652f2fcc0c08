"""The prediction path runs a data set in batches of similar length and hands predictions back
in the data set's order."""
import torch

from attnkit.data import TextClassificationData
from attnkit.tasks import get_task
from attnkit.tasks.prediction import length_order, predict_data


class RowSums(torch.nn.Module):
    """Logits from each row's own tokens only (their sum), and the batch widths it saw."""

    def __init__(self):
        super().__init__()
        self.widths = []

    def forward(self, batch):
        self.widths.append(batch["tokens"].shape[1])
        s = batch["tokens"].float().sum(1, keepdim=True)
        return {"logits": torch.cat([s, -s], 1) / 100}

    def loss(self, out, batch):
        return torch.nn.functional.cross_entropy(out["logits"], batch["labels"])


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=g).tolist()
    tokens = [torch.randint(1, 9, (k,), generator=g).tolist() for k in lengths]
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    return TextClassificationData(tokens, labels), tokens, labels


def test_predictions_come_back_in_data_order_from_batches_of_similar_length():
    data, tokens, labels = _data()
    model = RowSums()
    preds, gold, loss = predict_data(model, get_task("text_classification"), data, batch_size=8)
    assert gold == labels
    for p, t in zip(preds, tokens):
        s = sum(t) / 100
        assert torch.allclose(p, torch.softmax(torch.tensor([s, -s]), -1), atol=1e-6)
    # padded width summed over batches: sorted by length it is far below data order's
    in_order = sum(max(len(t) for t in tokens[i:i + 8]) for i in range(0, 50, 8))
    assert sum(model.widths) < 0.8 * in_order
    order = length_order(data)
    assert sorted(order) == list(range(50))
    assert [len(tokens[i]) for i in order] == sorted(len(t) for t in tokens)


def test_without_lengths_the_order_is_kept():
    class NoLengths:
        def __len__(self):
            return 3

    assert length_order(NoLengths()) == [0, 1, 2]


def test_a_multi_task_set_keeps_its_tasks_apart():
    class Parts:
        lengths = [5, 1, 3, 2, 9, 1]

        def __len__(self):
            return 6

        def locate(self, i):
            return (0 if i < 3 else 1), i % 3

    assert length_order(Parts()) == [1, 2, 0, 5, 3, 4]
