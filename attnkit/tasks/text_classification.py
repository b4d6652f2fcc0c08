"""Text classification: a table of texts and labels -> one label per text.

Data: ``data.train/dev/test`` tables (tsv, csv, jsonl, json) with ``text_column`` and
``label_column``, or ``data.builtin``. Model: embedding -> encoder -> pooler -> head, or a
pretrained backbone -> pooler -> head. Metrics: accuracy, macro/micro/weighted P/R/F1, per
class, the confusion matrix (and out-of-scope recall with ``data.out_of_scope``)."""
from __future__ import annotations

import html

from .. import data as D
from ..finetune.data import text_data_from_table
from ..models import PretrainedTextClassifier, TextClassifier
from . import featurizers as F
from .base import Encoded, Featurized, Task
from .single_label import SingleLabel, top_scores
from .splits import read_table_file, read_table_splits


class TextClassification(SingleLabel, Task):
    """One label per text."""

    inputs = "text"
    shares_text_encoder = True

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
            sizes = {**F.piece_sizes(cfg, vocabs["tokenizer"]), **sizes}
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

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"text", "label", "scores": {label: probability}}`` (the ``top_k`` best)."""
        return {"text": raw, **top_scores(fz.labels, pred, top_k)}

    def render_prediction(self, record: dict) -> str:
        """``label  (scores)  text``."""
        scores = ", ".join(f"{k} {v:.3f}" for k, v in record["scores"].items())
        return f"[bold]{record['label']}[/]\t({scores})\t{record['text']}"

    def example_html(self, enc, pred, gold, fz) -> str:
        """True and predicted label with its probability."""
        label = fz.labels[int(pred.argmax())]
        return (f"<p>true <b>{html.escape(str(gold))}</b>, predicted <b>{html.escape(label)}</b> "
                f"(p={float(pred.max()):.3f})</p>")
