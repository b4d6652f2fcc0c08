"""Token classification (NER, chunking): a CoNLL file -> one tag per word.

Data: CoNLL files (``token_column``, ``tag_column``, ``scheme``). Model: word embedding
(+ char-CNN) -> encoder -> per-token head (softmax or CRF), or a pretrained backbone whose
first word piece of each word carries the word's tag. Metrics: entity-level F1 as seqeval
computes it (the default ``train.metric``), precision, recall, token accuracy."""
from __future__ import annotations

import html

from .. import data as D
from ..finetune.data import WordPieceTaggingData
from ..models import PretrainedTokenTagger, TokenTagger
from . import featurizers as F
from .base import Encoded, Featurized, Task
from .metrics import TAGGING_METRICS, tagging_metrics
from .splits import read_conll_file, read_conll_splits


class TokenClassification(Task):
    """One tag per word."""

    target = "tags"
    inputs = "text"
    default_metric = "f1"
    data_format = "conll"
    shares_text_encoder = True

    def read_splits(self, cfg):
        """CoNLL train/dev/test."""
        return read_conll_splits(cfg)

    def read_file(self, cfg, path):
        """One CoNLL file."""
        return read_conll_file(cfg.data, path)

    def fit(self, cfg, train) -> Featurized:
        """Tags from train; word (and character) vocabularies, or the backbone's tokenizer."""
        tags = D.LabelVocab.build(t for s in train.tags for t in s)
        vocabs = {"labels.json": tags}
        sizes = {"num_classes": len(tags)}
        if F.uses_pieces(cfg):
            vocabs["tokenizer"] = F.backbone_tokenizer(cfg)
            sizes = {**F.piece_sizes(cfg, vocabs["tokenizer"]), **sizes}
        else:
            vocab = F.word_vocab(cfg, train.sentences)
            chars = D.CharVocab.build(train.sentences) if cfg.model.chars is not None else None
            vocabs = {"vocab.json": vocab, **vocabs}
            if chars is not None:
                vocabs["chars.json"] = chars
            sizes = {"vocab_size": len(vocab), **sizes,
                     "char_vocab_size": len(chars) if chars is not None else None}
        return Featurized(cfg, vocabs, list(tags.itos), sizes)

    def encode(self, fz: Featurized, raw):
        """Word ids (+ characters), or word pieces aligned to words; tag ids."""
        tags = fz.vocabs["labels.json"]
        if fz.pieces:
            return WordPieceTaggingData.from_conll(fz.vocabs["tokenizer"], raw, tags, fz.cfg.model.finetune.max_len)
        return D.TokenTaggingData.from_conll(raw, fz.vocabs["vocab.json"], tags, fz.vocabs.get("chars.json"),
                                             max_word_len=fz.cfg.data.max_word_len)

    def examples(self, raw):
        """Sentences as space-joined words, and their tag lists."""
        if raw is None:
            return [], []
        return [" ".join(s) for s in raw.sentences], [list(t) for t in raw.tags]

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Texts split into words (``data.tokenizer``); word pieces mapped back to words."""
        return [self._encode(fz, text) for text in F.check_texts(inputs)]

    def _encode(self, fz: Featurized, text: str) -> Encoded:
        words = F.split_words(fz, text)
        if fz.pieces:
            words = words or ["."]
            batch = WordPieceTaggingData.encode(fz.vocabs["tokenizer"], [words], None,
                                                fz.cfg.model.finetune.max_len).collate([0])
            ids = batch["tokens"][0].tolist()
            tokenizer = fz.vocabs["tokenizer"]
            end = len(ids) - 1 if ids[-1] in tokenizer.all_special_ids else len(ids)  # before a closing [SEP]
            first = batch["first"][0].tolist() + [end]
            unit_of: list[int | None] = [None] * len(ids)
            for w in range(len(words)):
                for p in range(first[w], first[w + 1]):
                    unit_of[p] = w
            return Encoded(batch, words, unit_of, fz.vocabs["tokenizer"].convert_ids_to_tokens(ids))
        enc = F.encode_word_list(fz, words)
        if "chars.json" in fz.vocabs:
            ids = enc.batch["tokens"][0].tolist()
            chars = fz.vocabs["chars.json"].encode_words(words or ["."], fz.cfg.data.max_word_len)
            enc.batch["chars"] = D.TokenTaggingData([ids], chars=[chars[:len(ids)]]).collate([0])["chars"]
        return enc

    def initial_weights(self, fz: Featurized) -> dict:
        """Word vectors for the embedding (``model.embedding.vectors``)."""
        return F.word_vectors(fz)

    def build_model(self, model_cfg, **sizes):
        """A tagger from blocks, or on a pretrained backbone."""
        if model_cfg.pretrained is not None:
            return PretrainedTokenTagger(model_cfg, **sizes)
        return TokenTagger(model_cfg, **sizes)

    def decode(self, model, out, batch):
        """Tag ids per sentence, padding removed (word counts for word-piece models)."""
        pred = model.predict(out, batch).tolist()
        n = batch.get("word_lengths", batch["lengths"]).tolist()
        preds = [p[:k] for p, k in zip(pred, n)]
        gold = [g[:k] for g, k in zip(batch["tags"].tolist(), n)] if "tags" in batch else None
        return preds, gold

    def metric_names(self, cfg) -> list[str]:
        """seqeval's entity scores and token accuracy."""
        return ["loss", *TAGGING_METRICS]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """Entity-level scores of the tag names."""
        def names(seqs):
            return [[fz.labels[i] for i in s] for s in seqs]
        return tagging_metrics(names(gold), names(preds))

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"text", "tokens", "tags"}``."""
        return {"text": raw, "tokens": list(enc.units) if raw.strip() else [],
                "tags": [fz.labels[i] for i in pred[:len(enc.units)]] if raw.strip() else []}

    def render_prediction(self, record: dict) -> str:
        """``word/TAG word/TAG ...``."""
        return " ".join(f"{w}/{t}" for w, t in zip(record["tokens"], record["tags"]))

    def is_correct(self, pred, gold, fz) -> bool:
        """Every word's tag is right."""
        return len(pred) >= len(gold) and [fz.labels[i] for i in pred[:len(gold)]] == list(gold)

    def explain_word(self, pred, gold, fz) -> int | None:
        """The first wrongly tagged word (None: the default, the first entity)."""
        names = [fz.labels[i] for i in pred]
        return next((i for i, (p, g) in enumerate(zip(names, gold)) if p != g), None)

    def example_html(self, enc, pred, gold, fz) -> str:
        """Each word with its predicted tag, green when right, red (with the gold) when wrong."""
        names = [fz.labels[i] for i in pred[:len(enc.units)]]
        return "<p>" + " ".join(
            f"{html.escape(w)}/<b style=\"color:{'#2a2' if p == g else '#c33'}\">{html.escape(p)}</b>"
            + ("" if p == g else f"<span class=muted>({html.escape(g)})</span>")
            for w, p, g in zip(enc.units, names, gold)) + "</p>"
