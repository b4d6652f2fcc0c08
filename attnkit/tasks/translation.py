"""Translation: sentence pairs -> a model that writes the target sentence.

Data: parallel text files ``PREFIX.SRC`` / ``PREFIX.TGT`` (line i translates line i; never
split on tabs): ``data.train/dev/test`` are prefixes, ``data.source_lang`` and
``data.target_lang`` the suffixes. Featurizer: one joint subword model (BPE or unigram, Hugging
Face ``tokenizers``) trained from both sides of train, saved in the run. Model: embedding ->
encoder -> decoder with cross-attention (Transformer, or GRU/LSTM with any attention score).
Predictions: beam search (``model.search``); metrics: sacreBLEU's cased and lowercased BLEU and
chrF on detokenised output (the dev metric is ``bleu``)."""
from __future__ import annotations

import contextlib
import dataclasses
import html
from pathlib import Path

import torch

from .. import data as D
from ..config import from_dict
from ..errors import ConfigError, DataError
from ..models.search import SearchConfig, translate_batch
from ..models.translators import Translator
from .base import Encoded, Featurized, Task
from .featurizers import check_texts
from .metrics import TRANSLATION_METRICS, translation_metrics
from .splits import SPLITS, holdout

SUBWORDS = "subwords.json"


def pair_paths(c, prefix: str, key: str) -> tuple[Path, Path]:
    """``PREFIX.SRC`` and ``PREFIX.TGT``, both existing, or one error naming the key."""
    if not c.source_lang or not c.target_lang:
        raise ConfigError("data.source_lang, data.target_lang: translation needs both file suffixes, e.g. "
                          "source_lang: de, target_lang: en with data.train: multi30k/train")
    out = []
    for lang in (c.source_lang, c.target_lang):
        p = Path(f"{prefix}.{lang}").expanduser()
        if not p.is_file():
            raise DataError(f"data.{key}: {p} not found (translation reads PREFIX.{c.source_lang} and "
                            f"PREFIX.{c.target_lang}; data.{key} is the prefix, here {prefix!r}; paths are "
                            f"relative to {Path.cwd()})")
        out.append(p)
    return out[0], out[1]


def read_pairs(c, prefix: str, key: str = "train") -> D.ParallelData:
    """One parallel pair of files, with the config's encoding and error policy."""
    src, tgt = pair_paths(c, prefix, key)
    return D.read_parallel(src, tgt, on_error=c.on_error, encoding=c.encoding)


def _subset(d: D.ParallelData, idx: list[int], skips: bool = False) -> D.ParallelData:
    return D.ParallelData(d.src_path, d.tgt_path, [d.sources[i] for i in idx], [d.targets[i] for i in idx],
                          [d.lines[i] for i in idx], d.skipped if skips else 0,
                          list(d.skip_reasons) if skips else [])


def search_config(model_cfg) -> SearchConfig:
    """``model.search`` as a checked :class:`SearchConfig`."""
    return from_dict(SearchConfig, dict(model_cfg.search or {}), "model.search")


def length_limit(model_cfg) -> int | None:
    """The most subwords a side may have: the Transformer's position tables (None: no limit)."""
    limits = [b.get("max_len", 256) for b in (model_cfg.encoder, model_cfg.decoder)
              if b.get("type", "transformer") == "transformer"]
    return min(limits) if limits else None


class Translation(Task):
    """Source sentence -> target sentence."""

    target = "tgt_out"
    inputs = "text"
    default_metric = "bleu"
    categorical = False
    counts_gold = False
    export_refusal = ("decoding is a search loop around the decoder (beam search with a cache), not one graph; "
                      "translation runs predict on the torch engine")
    writes_text = True
    data_format = "parallel"

    def read_splits(self, cfg):
        """Pairs for train/dev/test (dev held out of train when not given)."""
        c = cfg.data
        if c.builtin is not None:
            raise ConfigError("data.builtin: no embedded translation data set; give data.train: PREFIX with "
                              "data.source_lang and data.target_lang")
        train, dev, test = (read_pairs(c, getattr(c, k), k) if getattr(c, k) else None for k in SPLITS)
        if dev is None:
            tr, dv = holdout(len(train), c.dev_fraction, cfg.train.seed)
            train, dev = _subset(train, tr, skips=True), _subset(train, dv)
        return train, dev, test

    def read_file(self, cfg, path):
        """One pair of files (``path`` is the prefix)."""
        return read_pairs(cfg.data, str(path), "test")

    def fit(self, cfg, train) -> Featurized:
        """A joint subword model from both sides of train."""
        sw = D.SubwordModel.train(train.sources + train.targets, cfg.data.subword_vocab, cfg.data.subwords)
        sizes = {"vocab_size": len(sw), "pad_id": sw.pad_id, "bos_id": sw.bos_id, "eos_id": sw.eos_id}
        return Featurized(cfg, {SUBWORDS: sw}, [], sizes)

    def encode(self, fz: Featurized, raw):
        """Subword ids of both sides; a side longer than the model reads is an error (or skipped)."""
        return D.TranslationData.from_pairs(raw, fz.vocabs[SUBWORDS], length_limit(fz.cfg.model),
                                            on_long=fz.cfg.data.on_error)

    def examples(self, raw):
        """Source sentences and their reference translations."""
        if raw is None:
            return [], []
        return list(raw.sources), list(raw.targets)

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Source sentences as subwords (each subword a display unit)."""
        sw, limit = fz.vocabs[SUBWORDS], length_limit(fz.cfg.model)
        out = []
        for text in check_texts(inputs):
            ids = sw.encode(text) or [sw.eos_id]
            if limit and len(ids) > limit:
                raise DataError(f"input: {len(ids)} subwords, longer than the model's limit of {limit} "
                                f"(model.encoder.max_len); split the sentence")
            batch = {"src": torch.tensor([ids]), "src_lengths": torch.tensor([len(ids)])}
            pieces = sw.pieces(ids)
            out.append(Encoded(batch, pieces, list(range(len(ids))), pieces))
        return out

    def build_model(self, model_cfg, **sizes):
        """The encoder-decoder; ``model.search`` is how it decodes."""
        model = Translator(model_cfg, **sizes)
        model.search = search_config(model_cfg)
        return model

    @contextlib.contextmanager
    def dev_evaluation(self, model):
        """Dev BLEU after each epoch with ``model.search.dev_beam`` (greedy by default: 5x
        cheaper than beam 5, and it ranks epochs the same way); the final scores use ``beam``."""
        saved = model.search
        model.search = dataclasses.replace(saved, beam=saved.dev_beam, nbest=1)
        try:
            yield
        finally:
            model.search = saved

    def decode(self, model, out, batch):
        """n-best translations (token ids) per source, and the reference texts when given."""
        cfg = getattr(model, "search", None) or SearchConfig()
        preds = translate_batch(model, batch, cfg, need_weights=bool(batch.get("need_weights", False)))
        return preds, (list(batch["references"]) if "references" in batch else None)

    def metric_names(self, cfg) -> list[str]:
        """BLEU (cased and lowercased) and chrF."""
        return ["loss", *TRANSLATION_METRICS]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """sacreBLEU on the detokenised best hypotheses."""
        sw = fz.vocabs[SUBWORDS]
        return translation_metrics([sw.decode(p[0].tokens) for p in preds], list(gold))

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"text", "translation", "score", "nbest": [{"translation", "score"}]}``."""
        sw = fz.vocabs[SUBWORDS]
        nbest = [{"translation": sw.decode(h.tokens), "score": round(h.score, 4)} for h in pred]
        return {"text": raw, "translation": nbest[0]["translation"], "score": nbest[0]["score"],
                **({"nbest": nbest} if len(nbest) > 1 else {})}

    def render_prediction(self, record: dict) -> str:
        """``translation  (score)``, then the other hypotheses."""
        line = f"[bold]{record['translation']}[/]\t({record['score']:.3f})"
        return "\n".join([line] + [f"  {h['translation']}\t({h['score']:.3f})" for h in record.get("nbest", [])[1:]])

    def is_correct(self, pred, gold, fz) -> bool:
        """The best hypothesis equals the reference (whitespace aside)."""
        return " ".join(fz.vocabs[SUBWORDS].decode(pred[0].tokens).split()) == " ".join(str(gold).split())

    def alignment(self, model, enc, pred, fz):
        """The best hypothesis's cross-attention (last decoder layer, heads averaged; decoded
        again only when ``pred`` was decoded without it): rows are the written subwords (with
        ``</s>``), columns the source subwords."""
        best = pred[0] if pred and pred[0].attention is not None else None
        if best is None:
            cfg = getattr(model, "search", None) or SearchConfig()
            best = translate_batch(model, enc.batch, cfg, need_weights=True)[0][0]
        sw = fz.vocabs[SUBWORDS]
        written = sw.pieces(best.tokens[:-1]) + ["</s>"] if best.tokens[-1:] == [sw.eos_id] else sw.pieces(best.tokens)
        return best.attention.float().numpy(), written, list(enc.units)

    def example_html(self, enc, pred, gold, fz) -> str:
        """The translation and the reference."""
        hyp = fz.vocabs[SUBWORDS].decode(pred[0].tokens)
        return (f"<p>translation <b>{html.escape(hyp)}</b><br><span class=muted>reference "
                f"{html.escape(str(gold))}</span></p>")
