"""Text classification: a table of texts and labels -> one label per text.

Data: ``data.train/dev/test`` tables (tsv, csv, jsonl, json) with ``text_column`` and
``label_column``, or ``data.builtin``. Model: embedding -> encoder -> pooler -> head, or a
pretrained backbone -> pooler -> head. Metrics: accuracy, macro/micro/weighted P/R/F1, per
class, the confusion matrix (and out-of-scope recall with ``data.out_of_scope``)."""
from __future__ import annotations

import html

import torch

from .. import data as D
from ..finetune.data import text_data_from_table
from ..models import PretrainedTextClassifier, TextClassifier
from . import featurizers as F
from .base import Encoded, Featurized, Task
from .metrics import CLASSIFICATION_METRICS, classification_metrics
from .splits import read_table_file, read_table_splits


class TextClassification(Task):
    """One label per text."""

    target = "labels"
    inputs = "text"
    default_metric = "accuracy"

    def read_splits(self, cfg):
        """Tables for train/dev/test."""
        return read_table_splits(cfg)

    def read_file(self, cfg, path):
        """One labelled table."""
        return read_table_file(cfg.data, path)

    def fit(self, cfg, train) -> Featurized:
        """Labels from train; a word vocabulary, or the backbone's tokenizer."""
        labels = D.LabelVocab.build(train.labels)
        vocabs = {"labels.json": labels}
        sizes = {"num_classes": len(labels)}
        if F.uses_pieces(cfg):
            vocabs["tokenizer"] = F.backbone_tokenizer(cfg)
        else:
            tokenize = D.get_tokenizer(cfg.data.tokenizer)
            vocab = F.word_vocab(cfg, (tokenize(t) for t in train.texts))
            vocabs["vocab.json"] = vocab
            sizes = {"vocab_size": len(vocab), **sizes}
        return Featurized(cfg, vocabs, list(labels.itos), sizes)

    def encode(self, fz: Featurized, raw):
        """Word ids (or word pieces) and label ids."""
        labels = fz.vocabs["labels.json"]
        if fz.pieces:
            return text_data_from_table(fz.vocabs["tokenizer"], raw, labels, fz.cfg.model.finetune.max_len)
        return D.TextClassificationData.from_table(raw, fz.vocabs["vocab.json"], labels,
                                                   tokenizer=fz.cfg.data.tokenizer, max_len=fz.cfg.data.max_len)

    def examples(self, raw):
        """Texts and their label names."""
        if raw is None:
            return [], []
        return list(raw.texts), [str(x) for x in raw.labels]

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Texts as words or word pieces."""
        encode = F.encode_pieces if fz.pieces else F.encode_words
        return [encode(fz, text) for text in F.check_texts(inputs)]

    def initial_weights(self, fz: Featurized) -> dict:
        """Word vectors for the embedding (``model.embedding.vectors``)."""
        return F.word_vectors(fz)

    def build_model(self, model_cfg, **sizes):
        """A classifier from blocks, or on a pretrained backbone."""
        if model_cfg.pretrained is not None:
            return PretrainedTextClassifier(model_cfg, **sizes)
        return TextClassifier(model_cfg, **sizes)

    def decode(self, model, out, batch):
        """Class probabilities per text; gold label ids."""
        probs = torch.softmax(out["logits"].float(), -1)
        gold = batch["labels"].tolist() if "labels" in batch else None
        return list(probs), gold

    def metric_names(self, cfg) -> list[str]:
        """Classification metrics (and the out-of-scope ones with ``data.out_of_scope``)."""
        extra = ["in_scope_accuracy", "oos_recall", "oos_precision"] if cfg.data.out_of_scope else []
        return ["loss", *CLASSIFICATION_METRICS, *extra]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """scikit-learn's classification scores."""
        ids = [int(p.argmax()) for p in preds]
        return classification_metrics(gold, ids, fz.labels, fz.cfg.data.out_of_scope)

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"text", "label", "scores": {label: probability}}`` (the ``top_k`` best)."""
        names = fz.labels
        top = pred.topk(min(top_k, len(names)))
        return {"text": raw, "label": names[int(pred.argmax())],
                "scores": {names[i]: round(float(p), 4) for p, i in zip(top.values, top.indices)}}

    def render_prediction(self, record: dict) -> str:
        """``label  (scores)  text``."""
        scores = ", ".join(f"{k} {v:.3f}" for k, v in record["scores"].items())
        return f"[bold]{record['label']}[/]\t({scores})\t{record['text']}"

    def is_correct(self, pred, gold, fz) -> bool:
        """The top class is the gold label."""
        return fz.labels[int(pred.argmax())] == gold

    def example_html(self, enc, pred, gold, fz) -> str:
        """True and predicted label with its probability."""
        label = fz.labels[int(pred.argmax())]
        return (f"<p>true <b>{html.escape(str(gold))}</b>, predicted <b>{html.escape(label)}</b> "
                f"(p={float(pred.max()):.3f})</p>")
