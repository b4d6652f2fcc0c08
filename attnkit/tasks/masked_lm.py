"""Masked-language-model pretraining of attnkit's own encoder on unlabelled text.

Data: ``data.train`` (and more files in ``data.corpus``) are tables whose text column is read
and whose labels, if any, are ignored; dev is ``data.dev`` or ``dev_fraction`` of the texts.
Featurizer: a subword tokenizer (BPE or unigram, Hugging Face ``tokenizers``) trained from
the training texts, with ``<mask>`` among its special pieces, saved in the run as a Hugging
Face tokenizer (``RUN/tokenizer/``). Texts are cut into sequences of ``data.sequence_len``
pieces and masked anew for every batch (15%, 80/10/10). Model: embedding -> encoder
(default: transformer) -> MLM head (:class:`attnkit.models.MaskedLanguageModel`).

Metrics: ``mlm_loss`` (cross-entropy per masked piece, nats), ``perplexity``,
``masked_accuracy``, and two yardsticks: ``uniform_loss`` = log(vocabulary), what guessing
blindly scores, and ``unigram_loss``, what guessing by piece frequency scores. A loss that
stays near them means the encoder has learnt nothing from context; training says so.

Then ``model.init_from: RUN`` starts a classifier or tagger from this run's embedding and
encoder, reading text with this run's tokenizer."""
from __future__ import annotations

import html
import math
import zlib
from collections import Counter
from dataclasses import replace

import torch

from .. import data as D
from ..data.masked_text import IGNORE, MaskedTextData, cut_into_sequences, mask_tokens
from ..data.subwords import train_tokenizer
from ..errors import ConfigError, DataError
from ..models import MaskedLanguageModel
from ..nn.transformer import position_limit
from .base import Encoded, Featurized, Task
from .featurizers import check_texts
from .splits import data_path, hold_out_tables, read_table_file

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
MASK = "<mask>"
FIRST_ORDINARY = len(SPECIALS)  # ids below are special pieces, never masked or drawn at random
TOP_K = 5
STATS_SAMPLE = 20_000  # texts whose pieces estimate the unigram yardstick
METRICS = ("mlm_loss", "perplexity", "masked_accuracy")


def hf_tokenizer(tok):
    """A trained ``tokenizers.Tokenizer`` as a transformers tokenizer (what the word-piece
    featurizers of the other tasks read, and what ``save_pretrained`` writes into the run)."""
    from ..finetune.backbones import import_transformers

    fast = import_transformers().PreTrainedTokenizerFast
    return fast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                mask_token=MASK)


def _corpus_files(c) -> list[tuple[str, str]]:
    """``data.corpus`` as ``(path, text column)`` pairs: each entry is a path (read with
    ``data.text_column``) or ``{path: FILE, text_column: NAME}``."""
    out = []
    for i, entry in enumerate(c.corpus or []):
        where = f"data.corpus[{i}]"
        if isinstance(entry, str):
            out.append((entry, c.text_column))
        elif isinstance(entry, dict) and isinstance(entry.get("path"), str) and set(entry) <= {"path", "text_column"}:
            out.append((entry["path"], str(entry.get("text_column", c.text_column))))
        else:
            raise ConfigError(f"{where}: expected a file path or {{path: FILE, text_column: NAME}}, got {entry!r}")
    return out


def _texts(c, path, column: str, key: str) -> D.TableData:
    """The texts of one file (labels are not read)."""
    p = data_path(path, key)
    table = read_table_file(replace(c, text_column=column, label_column=None), p)
    return replace(table, labels=None)


def _joined(tables: list[D.TableData]) -> D.TableData:
    """Several files' texts as one split (file and line of the first; skips summed)."""
    first = tables[0]
    return D.TableData(path=first.path, texts=[t for x in tables for t in x.texts], labels=None,
                       lines=[n for x in tables for n in x.lines], skipped=sum(x.skipped for x in tables),
                       skip_reasons=[r for x in tables for r in x.skip_reasons])


class MaskedLM(Task):
    """Masked-language-model pretraining (see the module docstring)."""

    target = "targets"
    default_metric = "mlm_loss"
    categorical = False
    counts_gold = False
    lower_is_better = ("perplexity",)
    explain_refusal = ("its predictions are pieces at masked positions, not a label of the text: `attnkit predict "
                       "RUN 'a <mask> film'` shows them; explain a model started from it (model.init_from)")
    export_refusal = ("a masked_lm run is a pretrained encoder, not a model to deploy: start a classifier or tagger "
                      "from it (model.init_from: RUN), train it, and export that")

    def check_config(self, cfg) -> None:
        """The encoder defaults to a transformer (written into the config, so a run that starts
        from this one builds the same blocks); sequences must fit its positions."""
        super().check_config(cfg)
        cfg.model.encoder.setdefault("type", "transformer")
        limit = position_limit(cfg.model.encoder)
        if isinstance(limit, int) and cfg.data.sequence_len > limit:
            raise ConfigError(f"data.sequence_len: {cfg.data.sequence_len} pieces, more than "
                              f"model.encoder.max_len = {limit} positions; lower it or raise max_len")

    # ---------------------------------------------------------------- data
    def read_splits(self, cfg):
        """Texts of ``data.train`` + ``data.corpus``; dev and test from their files or held out."""
        c = cfg.data
        if c.builtin is not None:
            raise ConfigError("data.builtin: masked_lm reads unlabelled text files: give data.train (and data.corpus)")
        train = _joined([_texts(c, c.train, c.text_column, "train")]
                        + [_texts(c, p, col, f"corpus[{i}]") for i, (p, col) in enumerate(_corpus_files(c))])
        dev = _texts(c, c.dev, c.text_column, "dev") if c.dev else None
        test = _texts(c, c.test, c.text_column, "test") if c.test else None
        return hold_out_tables(cfg, train, dev, test)

    def read_file(self, cfg, path):
        """One file's texts."""
        return _texts(cfg.data, path, cfg.data.text_column, "file")

    def fit(self, cfg, train) -> Featurized:
        """A subword tokenizer trained from the training texts (with ``<mask>``)."""
        c = cfg.data
        if not train.texts:
            raise DataError("data.train: no texts to learn from")
        from tokenizers import AddedToken

        # "<mask>" takes the space before it, as BERT's and RoBERTa's do: "a <mask> film" has no lone "▁" piece
        specials = [*SPECIALS[:-1], AddedToken(MASK, lstrip=True, special=True)]
        tok = hf_tokenizer(train_tokenizer(train.texts, c.subword_vocab, c.subwords, specials=specials,
                                           lowercase=c.lowercase))
        sample = train.texts[:: max(1, len(train.texts) // STATS_SAMPLE)]
        counts = Counter(i for ids in tok(sample, add_special_tokens=False)["input_ids"] for i in ids)
        total = sum(counts.values())
        entropy = -sum(n / total * math.log(n / total) for n in counts.values()) if total else 0.0
        stats = {"unigram_loss": entropy, "uniform_loss": math.log(len(tok) - FIRST_ORDINARY),
                 "input_limit": f"data.sequence_len = {c.sequence_len} word pieces"}
        sizes = {"vocab_size": len(tok), "mask_id": tok.mask_token_id, "first_ordinary": FIRST_ORDINARY}
        return Featurized(cfg, {"tokenizer": tok}, [], sizes, stats)

    def encode(self, fz: Featurized, raw):
        """Texts as sequences of ``data.sequence_len`` pieces, masked the same way every time
        (seeded: a dev score comparable between epochs); :meth:`training_view` masks anew."""
        tok = fz.vocabs["tokenizer"]
        ids = tok(list(raw.texts), add_special_tokens=False)["input_ids"] if raw.texts else []
        return MaskedTextData(cut_into_sequences(ids, fz.cfg.data.sequence_len), tok.mask_token_id, len(tok),
                              FIRST_ORDINARY, fz.cfg.data.mask_fraction, fixed_seed=fz.cfg.train.seed)

    def training_view(self, data):
        """Fresh masks for every training batch (dynamic masking)."""
        return replace_seed(data, None)

    def examples(self, raw):
        """Texts (there are no gold answers beyond the text itself)."""
        if raw is None:
            return [], []
        return list(raw.texts), [None] * len(raw.texts)

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """A text with ``<mask>`` where pieces are to be predicted; a text without one gets
        ``data.mask_fraction`` of its pieces masked (seeded by the text) and predicted back.
        Every batch has the same keys (``predict`` marks the positions), so inputs of both
        kinds and any lengths stack into one batch."""
        tok = fz.vocabs["tokenizer"]
        out = []
        limit = fz.cfg.data.sequence_len
        for text in check_texts(inputs):
            every = tok(text, add_special_tokens=False)["input_ids"]
            ids = every[:limit] or [tok.unk_token_id]
            tokens, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
            if tok.mask_token_id in ids:  # the user's masks: predicted, nothing to compare with
                targets = torch.full_like(tokens, IGNORE)
                predict = tokens == tok.mask_token_id
            else:
                seed = zlib.crc32(text.encode("utf-8"))  # the same text is masked the same way every time
                tokens, targets = mask_tokens(tokens, lengths, tok.mask_token_id, len(tok), FIRST_ORDINARY,
                                              fz.cfg.data.mask_fraction, torch.Generator().manual_seed(seed))
                predict = targets != IGNORE
            batch = {"tokens": tokens, "lengths": lengths, "targets": targets, "predict": predict.long()}
            pieces = tok.convert_ids_to_tokens(tokens[0].tolist())
            out.append(Encoded(batch, pieces, list(range(len(ids))), pieces, truncated=len(every) > len(ids)))
        return out

    # ---------------------------------------------------------------- model and scores
    def build_model(self, model_cfg, **sizes):
        """Embedding -> encoder -> MLM head."""
        if model_cfg.pretrained is not None or model_cfg.init_from is not None:
            raise ConfigError("model.pretrained / model.init_from: masked_lm pretrains a model from blocks; "
                              "remove them")
        return MaskedLanguageModel(model_cfg, **sizes)

    def decode(self, model, out, batch):
        """Per example: the top pieces and their probabilities at each predicted position;
        with targets, the gold pieces (-100 where a user typed the mask) and their
        log-probabilities (the loss)."""
        where = out["where"]
        logp = torch.log_softmax(out["logits"].float(), -1)
        top = logp.topk(min(TOP_K, logp.shape[-1]), -1)
        counts = where.sum(1).tolist()
        preds = [{"ids": i, "probs": p.exp()} for i, p in zip(top.indices.split(counts), top.values.split(counts))]
        if "targets" not in batch:
            return preds, None
        gold_ids = batch["targets"][where]
        gold_logp = logp.gather(1, gold_ids.clamp(min=0)[:, None])[:, 0]
        gold = [{"ids": i, "logprob": lp} for i, lp in zip(gold_ids.split(counts), gold_logp.split(counts))]
        for p, g in zip(preds, gold):
            p["gold"] = g["ids"]  # kept with the prediction: the report's right/wrong needs no gold from the text
        return preds, gold

    def metric_names(self, cfg) -> list[str]:
        """The loss, perplexity and accuracy (the yardsticks are reported, not chosen by)."""
        return ["loss", *METRICS]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """Per-piece loss, perplexity and top-1 accuracy over every predicted piece that has a
        target; NaN when there is none (never the best epoch)."""
        n, nll, right = 0, 0.0, 0
        for p, g in zip(preds, gold):
            known = g["ids"] != IGNORE
            n += int(known.sum())
            nll -= float(g["logprob"][known].sum())
            right += int((p["ids"][:, 0][known] == g["ids"][known]).sum())
        loss = nll / n if n else float("nan")
        return {"mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0)) if n else float("nan"),
                "masked_accuracy": right / n if n else float("nan"),
                "uniform_loss": fz.stats.get("uniform_loss", float("nan")),
                "unigram_loss": fz.stats.get("unigram_loss", float("nan")), "predicted_pieces": n}

    def progress_warning(self, dev: dict, fz: Featurized) -> str | None:
        """The usual failure said plainly: a loss still near log(vocabulary) (nothing learnt),
        or no better than guessing by piece frequency (the encoder uses no context)."""
        loss, uniform, unigram = dev.get("mlm_loss"), fz.stats.get("uniform_loss"), fz.stats.get("unigram_loss")
        if loss is None or uniform is None:
            return None
        if loss >= 0.9 * uniform:
            return (f"masked_lm: dev loss {loss:.3f} is still near log(vocabulary) = {uniform:.3f}, what guessing "
                    f"blindly scores: the model has learnt nothing yet (raise train.optimizer.lr or add warmup "
                    f"if it stays there)")
        if unigram is not None and loss >= unigram:
            return (f"masked_lm: dev loss {loss:.3f} is no better than guessing by piece frequency "
                    f"({unigram:.3f}): the encoder does not use the context yet")
        return None

    def is_correct(self, pred, gold, fz) -> bool:
        """Every masked piece with a known original predicted right (as first guess); False
        when there is none to compare with."""
        truth = pred.get("gold")
        if truth is None or not bool((truth != IGNORE).any()):
            return False
        known = truth != IGNORE
        return bool((pred["ids"][:, 0][known] == truth[known]).all())

    # ---------------------------------------------------------------- showing results
    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"text", "filled", "masks": [[{"piece", "p"} ...] per masked piece]}``."""
        tok = fz.vocabs["tokenizer"]
        ids = enc.batch["tokens"][0].tolist()
        masks = [[{"piece": tok.convert_ids_to_tokens(int(i)), "p": round(float(p), 4)}
                  for i, p in zip(pred["ids"][k][:top_k], pred["probs"][k][:top_k])] for k in range(len(pred["ids"]))]
        where = _predicted(enc, tok.mask_token_id)
        filled = list(ids)
        for k, pos in enumerate(where):
            filled[pos] = int(pred["ids"][k][0])
        record = {"text": raw, "filled": tok.decode(filled), "masks": masks}
        originals = [int(enc.batch["targets"][0, p]) for p in where] if "targets" in enc.batch else []
        if originals and all(t != IGNORE for t in originals):
            record["original"] = tok.convert_ids_to_tokens(originals)
        return record

    def render_prediction(self, record: dict) -> str:
        """``filled text  (alternatives per mask)``."""
        was = record.get("original") or [None] * len(record["masks"])
        alts = "; ".join((f"{w} -> " if w else "") + " / ".join(f"{m['piece']} {m['p']:.2f}" for m in mask)
                         for w, mask in zip(was, record["masks"]))
        return f"[bold]{record['filled']}[/]\t({alts})"

    def example_html(self, enc, pred, gold, fz) -> str:
        """The masked pieces with the model's first guess and the truth."""
        tok = fz.vocabs["tokenizer"]
        parts = []
        for k, pos in enumerate(_predicted(enc, tok.mask_token_id)):
            guess = tok.convert_ids_to_tokens(int(pred["ids"][k][0]))
            gold = int(enc.batch["targets"][0, pos]) if "targets" in enc.batch else IGNORE
            truth = tok.convert_ids_to_tokens(gold) if gold != IGNORE else "?"
            parts.append(f"{html.escape(truth)} &rarr; <b>{html.escape(guess)}</b>")
        return f"<p>masked pieces (true &rarr; predicted): {', '.join(parts) or 'none'}</p>"


def _predicted(enc: Encoded, mask_id: int) -> list[int]:
    """Positions the model predicts for one encoded input (as :class:`MaskedLanguageModel` picks them)."""
    batch = enc.batch
    where = batch["predict"][0].bool() if "predict" in batch else batch["tokens"][0] == mask_id
    return where.nonzero()[:, 0].tolist()


def replace_seed(data: MaskedTextData, seed: int | None) -> MaskedTextData:
    """The same sequences with other masking (``seed`` None: fresh masks every batch)."""
    return MaskedTextData(data.sequences, data.mask_id, data.vocab_size, data.first_ordinary, data.fraction, seed)
