"""A tiny learnable text task for trainer tests: label 1 iff token 3 occurs."""
from __future__ import annotations

import torch


class ToyText:
    """Indexable data set with ``lengths`` and ``collate`` like attnkit.data's."""

    def __init__(self, n: int, seed: int = 0, vocab: int = 12):
        g = torch.Generator().manual_seed(seed)
        self.seqs, self.labels = [], []
        for _ in range(n):
            length = int(torch.randint(2, 9, (1,), generator=g))
            seq = torch.randint(4, vocab, (length,), generator=g)
            if torch.rand(1, generator=g) < 0.5:
                seq[int(torch.randint(0, length, (1,), generator=g))] = 3
            self.seqs.append(seq)
            self.labels.append(int((seq == 3).any()))
        self.lengths = [len(s) for s in self.seqs]

    def __len__(self):
        return len(self.seqs)

    def collate(self, idx):
        t = max(self.lengths[i] for i in idx)
        tokens = torch.zeros(len(idx), t, dtype=torch.long)
        for row, i in enumerate(idx):
            tokens[row, :self.lengths[i]] = self.seqs[i]
        return {"tokens": tokens, "lengths": torch.tensor([self.lengths[i] for i in idx]),
                "labels": torch.tensor([self.labels[i] for i in idx])}


def toy_model(seed: int = 0, dropout: float = 0.1):
    from attnkit.config import from_dict
    from attnkit.models import ModelConfig
    from attnkit.tasks import build_model

    torch.manual_seed(seed)
    cfg = from_dict(ModelConfig, {"embedding": {"dim": 16, "dropout": dropout},
                                  "encoder": {"type": "lstm", "hidden": 16}, "pooler": {"type": "attention"}})
    return build_model("text_classification", cfg, vocab_size=12, num_classes=2)
