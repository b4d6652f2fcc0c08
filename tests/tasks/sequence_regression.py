"""A task defined in one file, with no change anywhere else in attnkit: sequence regression
(one number per text) with MSE/MAE metrics. The config names it as ``module:Class``
(``task: sequence_regression:SequenceRegression``) with this folder on the Python path;
``docs/tasks.md`` walks through it."""
from __future__ import annotations

import torch
from torch import nn

from attnkit import data as D
from attnkit.errors import DataError
from attnkit.models import TaskModel
from attnkit.nn import ENCODERS, POOLERS
from attnkit.tasks import Encoded, Featurized, Task
from attnkit.tasks.featurizers import check_texts, encode_words, word_vocab
from attnkit.tasks.splits import read_table_file, read_table_splits


class ValuesData:
    """Word ids and one float target per text."""

    def __init__(self, tokens: list[list[int]], values: list[float] | None):
        self.tokens, self.values = tokens, values

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]

    def collate(self, indices) -> dict:
        tokens, lengths = D.pad_batch([self.tokens[i] for i in indices])
        batch = {"tokens": tokens, "lengths": lengths}
        if self.values is not None:
            batch["values"] = torch.tensor([self.values[i] for i in indices], dtype=torch.float32)
        return batch


class Regressor(TaskModel):
    """embedding -> encoder (any registered one) -> attention pooling -> one number. A
    ``TaskModel`` gives explanations what they need (``embedding_layer``, a baseline)."""

    target = "values"

    def __init__(self, vocab_size: int, dim: int = 32, encoder: str = "gru"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.encoder = ENCODERS.get(encoder)(dim, hidden=dim)
        self.pooler = POOLERS.get("attention")(self.encoder.out_dim)
        self.out = nn.Linear(self.encoder.out_dim, 1)

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        h = self.encoder(self.embedding(batch["tokens"]), batch["lengths"])
        pooled, w = self.pooler(h, batch["lengths"], need_weights=need_weights)
        return {"logits": self.out(pooled), "attention": w}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return nn.functional.mse_loss(out["logits"][:, 0], batch["values"])

    def predict(self, out: dict, batch: dict | None = None) -> torch.Tensor:
        return out["logits"][:, 0]


class SequenceRegression(Task):
    """One number per text; the table's label column holds it."""

    target = "values"
    categorical = False  # numbers, not names: dev values never seen in train are expected
    default_metric = "mse"
    lower_is_better = ("mse", "mae")

    def read_splits(self, cfg):
        return read_table_splits(cfg)

    def read_file(self, cfg, path):
        return read_table_file(cfg.data, path)

    def fit(self, cfg, train) -> Featurized:
        tokenize = D.get_tokenizer(cfg.data.tokenizer)
        vocab = word_vocab(cfg, (tokenize(t) for t in train.texts))
        return Featurized(cfg, {"vocab.json": vocab}, ["value"], {"vocab_size": len(vocab)})

    def encode(self, fz, raw):
        tokenize = D.get_tokenizer(fz.cfg.data.tokenizer)
        vocab = fz.vocabs["vocab.json"]
        values = None
        if raw.labels is not None:
            try:
                values = [float(v) for v in raw.labels]
            except ValueError as e:
                raise DataError(f"{raw.path}: the label column must hold numbers ({e})") from None
        return ValuesData([vocab.encode(tokenize(t)) or [vocab.unk_id] for t in raw.texts], values)

    def examples(self, raw):
        return (list(raw.texts), [float(v) for v in raw.labels]) if raw is not None else ([], [])

    def encode_inputs(self, fz, inputs) -> list[Encoded]:
        return [encode_words(fz, t) for t in check_texts(inputs)]

    def build_model(self, model_cfg, **sizes):
        return Regressor(sizes["vocab_size"], **(model_cfg.encoder or {}))

    def decode(self, model, out, batch):
        pred = model.predict(out, batch).tolist()
        return pred, batch["values"].tolist() if "values" in batch else None

    def metric_names(self, cfg):
        return ["loss", "mse", "mae"]

    def score(self, preds, gold, fz):
        p, g = torch.tensor(preds), torch.tensor(gold)
        return {"mse": float(((p - g) ** 2).mean()), "mae": float((p - g).abs().mean()), "n": len(gold)}

    def prediction(self, fz, enc, pred, raw, top_k=3):
        return {"text": raw, "value": round(float(pred), 4)}

    def render_prediction(self, record):
        return f"{record['value']:.3f}\t{record['text']}"

    def is_correct(self, pred, gold, fz):
        return abs(pred - gold) < 0.5

    def example_html(self, enc, pred, gold, fz):
        return f"<p>true {gold:.2f}, predicted {pred:.2f}</p>"
